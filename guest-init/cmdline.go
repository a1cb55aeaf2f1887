package guestinit

import (
	"fmt"
	"strings"
)

// AgentPortName is the virtio-console port name of the agent protocol.
const AgentPortName = "org.spore.agent"

// Config contains the spore.* settings of the kernel command line.
type Config struct {
	// Root is the block device of the root disk (spore.root=/dev/vda), or
	// empty to stay in the initramfs.
	Root string
	// RootFSType is the root disk's file system (spore.rootfstype=, default ext4).
	RootFSType string
	// RootReadOnly mounts the root disk read-only (spore.rootmode=ro, the
	// default; spore.rootmode=rw mounts it read-write).
	RootReadOnly bool
	// Run is a shell command to run once, after which the guest powers off
	// (spore.run="echo hi"). Empty serves the agent until a Poweroff.
	Run string
	// Port is the agent port name (spore.port=, default AgentPortName).
	Port string
}

// ParseCmdline reads the spore.* parameters of a kernel command line such
// as the content of /proc/cmdline. Other parameters are ignored. Values may
// be quoted with double quotes, as the kernel allows.
func ParseCmdline(cmdline string) (Config, error) {
	cfg := Config{RootFSType: "ext4", RootReadOnly: true, Port: AgentPortName}
	params, err := splitCmdline(cmdline)
	if err != nil {
		return cfg, err
	}
	for _, p := range params {
		key, val, hasVal := strings.Cut(p, "=")
		if !strings.HasPrefix(key, "spore.") {
			continue
		}
		if !hasVal || val == "" {
			return cfg, fmt.Errorf("kernel command line: %s needs a value (%s=VALUE)", key, key)
		}
		switch key {
		case "spore.root":
			if !strings.HasPrefix(val, "/dev/") {
				return cfg, fmt.Errorf("kernel command line: spore.root=%s is not a device path, expected /dev/NAME", val)
			}
			cfg.Root = val
		case "spore.rootfstype":
			cfg.RootFSType = val
		case "spore.rootmode":
			switch val {
			case "ro":
				cfg.RootReadOnly = true
			case "rw":
				cfg.RootReadOnly = false
			default:
				return cfg, fmt.Errorf("kernel command line: spore.rootmode=%s is invalid, expected ro or rw", val)
			}
		case "spore.run":
			cfg.Run = val
		case "spore.port":
			cfg.Port = val
		default:
			return cfg, fmt.Errorf("kernel command line: unknown parameter %s; known: spore.root, spore.rootfstype, spore.rootmode, spore.run, spore.port", key)
		}
	}
	return cfg, nil
}

// splitCmdline splits at spaces outside double quotes and removes the
// quotes, as the kernel's own parser does.
func splitCmdline(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("kernel command line: unterminated double quote in %q", s)
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}
