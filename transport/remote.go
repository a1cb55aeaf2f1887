// Package transport moves spore commits between stores: through OCI
// registries and through OCI image layout bundles. It also opens registry
// repositories for other packages that fetch OCI content, such as root
// file system images.
package transport

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// RemoteOptions control how a registry repository is reached.
type RemoteOptions struct {
	// PlainHTTP talks HTTP instead of HTTPS. Loopback registries
	// (localhost, 127.0.0.0/8, ::1) use plain HTTP without being asked.
	PlainHTTP bool
	// DockerConfig is the docker config file that holds credentials and
	// credential helpers; empty means ~/.docker/config.json (or
	// $DOCKER_CONFIG/config.json).
	DockerConfig string
	// HTTPClient replaces the default retrying HTTP client.
	HTTPClient *http.Client
}

// ParseReference splits REGISTRY/REPO[:TAG|@DIGEST] and explains a bad one.
func ParseReference(s string) (registry.Reference, error) {
	ref, err := registry.ParseReference(s)
	if err != nil {
		return registry.Reference{}, fmt.Errorf("%q is not a registry reference: %v (write REGISTRY/REPO[:TAG] or REGISTRY/REPO@sha256:DIGEST, for example 127.0.0.1:5000/spores/base:v1)", s, err)
	}
	return ref, nil
}

// OpenRepository returns a client for the repository that reference names.
// A tag or digest in reference becomes the repository's default reference.
// Credentials come from the docker config and its credential helpers, as
// docker and oras find them.
func OpenRepository(reference string, opts RemoteOptions) (*remote.Repository, error) {
	ref, err := ParseReference(reference)
	if err != nil {
		return nil, err
	}
	repo, err := remote.NewRepository(ref.String())
	if err != nil {
		return nil, fmt.Errorf("open repository %q: %w", reference, err)
	}
	repo.PlainHTTP = opts.PlainHTTP || IsLoopbackHost(ref.Registry)

	store, err := credentialStore(opts.DockerConfig)
	if err != nil {
		return nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		client = retry.DefaultClient
	}
	repo.Client = &auth.Client{
		Client:     client,
		Cache:      auth.NewCache(),
		Credential: credentials.Credential(store),
	}
	return repo, nil
}

// credentialStore opens the docker config at path, or the default one.
func credentialStore(path string) (credentials.Store, error) {
	opts := credentials.StoreOptions{}
	if path != "" {
		store, err := credentials.NewStore(path, opts)
		if err != nil {
			return nil, fmt.Errorf("read registry credentials from %s: %w", path, err)
		}
		return store, nil
	}
	store, err := credentials.NewStoreFromDocker(opts)
	if err != nil {
		return nil, fmt.Errorf("read registry credentials from the docker config: %w (fix or move ~/.docker/config.json, or set DOCKER_CONFIG)", err)
	}
	return store, nil
}

// IsLoopbackHost reports whether a registry host[:port] is on this machine.
func IsLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
