package uffd

import "runtime"

// keepAlive keeps a buffer reachable until the ioctl that read it through a
// raw address returned.
func keepAlive(v any) { runtime.KeepAlive(v) }
