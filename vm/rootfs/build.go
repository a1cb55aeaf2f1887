package rootfs

import (
	"context"
	"errors"
)

func build(ctx context.Context, image string, opts BuildOptions) (*Image, error) {
	return nil, errors.New("rootfs: Build is not implemented yet")
}
