package guestinit

import (
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	cfg, err := ParseCmdline(`console=hvc0 quiet spore.root=/dev/vda spore.rootmode=rw spore.run="echo hello world" panic=-1` + "\n")
	if err != nil {
		t.Fatalf("ParseCmdline: %v", err)
	}
	if cfg.Root != "/dev/vda" || cfg.RootReadOnly || cfg.RootFSType != "ext4" {
		t.Errorf("root config = %+v, expected /dev/vda, read-write, ext4", cfg)
	}
	if cfg.Run != "echo hello world" {
		t.Errorf("run = %q, expected the unquoted command", cfg.Run)
	}
	if cfg.Port != AgentPortName {
		t.Errorf("port = %q, expected %q", cfg.Port, AgentPortName)
	}
}

func TestParseCmdlineDefaults(t *testing.T) {
	cfg, err := ParseCmdline("console=ttyAMA0")
	if err != nil {
		t.Fatalf("ParseCmdline: %v", err)
	}
	if cfg.Root != "" || !cfg.RootReadOnly || cfg.Run != "" {
		t.Errorf("config = %+v, expected no root disk, read-only default, no run", cfg)
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	for line, want := range map[string]string{
		"spore.rootmode=rx":  "spore.rootmode=rx is invalid, expected ro or rw",
		"spore.root=vda":     "not a device path",
		"spore.root":         "spore.root needs a value",
		"spore.colour=blue":  "unknown parameter spore.colour",
		`spore.run="echo hi`: "unterminated double quote",
	} {
		_, err := ParseCmdline(line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCmdline(%q) = %v, expected an error containing %q", line, err, want)
		}
	}
}
