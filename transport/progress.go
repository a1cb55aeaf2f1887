package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// progressReader reports the bytes read through it after each MiB, and
// once more at the end of the blob.
type progressReader struct {
	r        io.Reader
	event    Progress
	report   func(Progress)
	reported int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.event.Done += int64(n)
	if p.report != nil && (p.event.Done-p.reported >= 1<<20 || p.event.Done == p.event.Total || err == io.EOF) {
		p.reported = p.event.Done
		p.report(p.event)
	}
	return n, err
}

// objectCount returns a pack layer's object count annotation, or 0.
func objectCount(desc ocispec.Descriptor) int {
	n, err := strconv.Atoi(desc.Annotations[AnnotationObjects])
	if err != nil {
		return 0
	}
	return n
}

// withNetworkHint adds what to check to an error about a registry that
// could not be reached.
func withNetworkHint(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("%w (the registry is unreachable: check its address and that it is running)", err)
	}
	return err
}
