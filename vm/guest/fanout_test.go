package guest

import (
	"bytes"
	"strings"
	"testing"
)

func TestLineWriterSplitsLines(t *testing.T) {
	var lines []string
	w := &lineWriter{emit: func(line []byte) { lines = append(lines, string(line)) }}
	for _, part := range []string{"one\ntw", "o\n", "\nthree"} {
		w.Write([]byte(part))
	}
	if got := strings.Join(lines, "|"); got != "one|two|" {
		t.Errorf("lines before Flush = %q, expected one|two|", got)
	}
	w.Flush()
	if got := strings.Join(lines, "|"); got != "one|two||three" {
		t.Errorf("lines after Flush = %q, expected one|two||three", got)
	}
}

func TestLineWriterBoundsLongLine(t *testing.T) {
	var lines [][]byte
	w := &lineWriter{emit: func(line []byte) { lines = append(lines, line) }}
	w.Write(bytes.Repeat([]byte("x"), maxLine*2+10))
	if len(lines) != 2 || len(lines[0]) != maxLine || len(w.buf) != 10 {
		t.Errorf("a line of %d bytes gave %d parts and %d buffered bytes, expected 2 of %d and 10", maxLine*2+10, len(lines), len(w.buf), maxLine)
	}
}

func TestFanoutKernelLogNamesChild(t *testing.T) {
	var log bytes.Buffer
	f := &fanout{opts: FanoutOptions{Guest: Options{KernelLog: &log}}}
	first, second := f.kernelLog("000000"), f.kernelLog("000001")
	first.Write([]byte("Unable to handle kernel NULL pointer\n[ 1.5] pc : x"))
	second.Write([]byte("booted\n"))
	first.Flush()
	want := "000000: Unable to handle kernel NULL pointer\n000001: booted\n000000: [ 1.5] pc : x\n"
	if log.String() != want {
		t.Errorf("kernel log = %q, expected %q", log.String(), want)
	}
}

func TestFanoutNeedsCommandOrDuration(t *testing.T) {
	_, err := Fanout(t.Context(), nil, []FanoutChild{{Name: "a"}}, FanoutOptions{})
	if err == nil || !strings.Contains(err.Error(), "needs a duration") {
		t.Errorf("error = %v, expected one asking for a duration", err)
	}
}
