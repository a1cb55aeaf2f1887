package objects

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// hexPrefixBytes returns the whole bytes that an (even or odd length) hex
// prefix fixes; an odd final digit is checked by matchesHexPrefix.
func hexPrefixBytes(prefix string) ([]byte, error) {
	if len(prefix) > 2*IDSize {
		return nil, fmt.Errorf("%w: prefix %q is longer than %d hex digits", ErrInvalidID, prefix, 2*IDSize)
	}
	even := prefix[:len(prefix)/2*2]
	b, err := hex.DecodeString(strings.ToLower(even))
	if err != nil {
		return nil, fmt.Errorf("%w: prefix %q is not hex", ErrInvalidID, prefix)
	}
	if len(prefix)%2 == 1 && !strings.ContainsRune("0123456789abcdefABCDEF", rune(prefix[len(prefix)-1])) {
		return nil, fmt.Errorf("%w: prefix %q is not hex", ErrInvalidID, prefix)
	}
	return b, nil
}

// matchesHexPrefix reports whether id's hex form starts with prefix.
func matchesHexPrefix(id ID, prefix string) bool {
	return strings.HasPrefix(id.String(), strings.ToLower(prefix))
}
