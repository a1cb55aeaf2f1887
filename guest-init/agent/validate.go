package agent

import (
	"fmt"
	"strings"
)

// Validate checks an Exec request against the protocol rules and field
// limits. The Client calls it before sending and the Server after decoding.
func (m *Exec) Validate() error {
	switch {
	case m.Session == 0:
		return fmt.Errorf("exec: session ID 0 is reserved")
	case len(m.Argv) == 0 && m.Shell == "":
		return fmt.Errorf("exec: no command: set Argv or Shell")
	case len(m.Argv) > 0 && m.Shell != "":
		return fmt.Errorf("exec: both Argv (%q) and Shell (%q) are set, set only one", m.Argv[0], m.Shell)
	case len(m.Argv) > 0 && m.Argv[0] == "":
		return fmt.Errorf("exec: argv[0] is empty, expected a program name or path")
	}
	if err := checkList("argv", m.Argv, false); err != nil {
		return err
	}
	if err := checkList("env", m.Env, true); err != nil {
		return err
	}
	if len(m.Shell) > MaxArgLen {
		return fmt.Errorf("exec: shell command is %d bytes, the limit is %d", len(m.Shell), MaxArgLen)
	}
	if strings.IndexByte(m.Shell, 0) >= 0 {
		return fmt.Errorf("exec: shell command contains a NUL byte")
	}
	if len(m.Dir) > MaxPathLen {
		return fmt.Errorf("exec: working directory is %d bytes, the limit is %d", len(m.Dir), MaxPathLen)
	}
	if m.Dir != "" && (!strings.HasPrefix(m.Dir, "/") || strings.IndexByte(m.Dir, 0) >= 0) {
		return fmt.Errorf("exec: working directory %q is not an absolute path", m.Dir)
	}
	if !m.TTY && (m.Rows != 0 || m.Cols != 0) {
		return fmt.Errorf("exec: window size %dx%d is set without a TTY", m.Cols, m.Rows)
	}
	return nil
}

// checkList checks an argv or env list against MaxArgs, MaxArgLen and
// MaxListBytes. Env entries must have the form KEY=VALUE.
func checkList(name string, list []string, env bool) error {
	if len(list) > MaxArgs {
		return fmt.Errorf("%s has %d entries, the limit is %d", name, len(list), MaxArgs)
	}
	total := 0
	for i, s := range list {
		if len(s) > MaxArgLen {
			return fmt.Errorf("%s[%d] is %d bytes, the limit is %d", name, i, len(s), MaxArgLen)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%s[%d] contains a NUL byte", name, i)
		}
		if env {
			if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
				return fmt.Errorf("%s[%d] is %q, expected KEY=VALUE", name, i, truncate(s, 64))
			}
		}
		total += len(s)
	}
	if total > MaxListBytes {
		return fmt.Errorf("%s totals %d bytes, the limit is %d", name, total, MaxListBytes)
	}
	return nil
}

// Validate checks a SetIdentity request.
func (m *SetIdentity) Validate() error {
	if m.Generation == "" {
		return fmt.Errorf("identity: generation ID is empty")
	}
	for _, c := range m.Generation {
		if !isNameChar(c) {
			return fmt.Errorf("identity: generation ID %q contains %q, expected letters, digits, '.', '_' or '-'",
				truncate(m.Generation, 64), c)
		}
	}
	if len(m.Generation) > 128 {
		return fmt.Errorf("identity: generation ID is %d bytes, the limit is 128", len(m.Generation))
	}
	if len(m.Hostname) > MaxHostnameLen {
		return fmt.Errorf("identity: hostname is %d bytes, the limit is %d", len(m.Hostname), MaxHostnameLen)
	}
	for _, c := range m.Hostname {
		if !isNameChar(c) || c == '_' {
			return fmt.Errorf("identity: hostname %q contains %q, expected letters, digits, '.' or '-'", m.Hostname, c)
		}
	}
	if len(m.Entropy) > MaxEntropyLen {
		return fmt.Errorf("identity: entropy is %d bytes, the limit is %d", len(m.Entropy), MaxEntropyLen)
	}
	if err := checkList("identity env", m.Env, true); err != nil {
		return err
	}
	for i, s := range m.Env {
		if strings.ContainsAny(s, "\n\r") {
			return fmt.Errorf("identity env[%d] contains a line break, which the env file cannot hold", i)
		}
	}
	return nil
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
