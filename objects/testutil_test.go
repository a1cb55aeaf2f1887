package objects

import (
	"math/rand/v2"
	"testing"
)

// openTestDB opens a database in a fresh directory, closed at cleanup.
func openTestDB(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1, NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// vmImage returns a synthetic memory image: half zero pages, a quarter
// random bytes, a quarter program-like bytes, shuffled at 4 KiB pages.
func vmImage(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	img := make([]byte, size)
	code := []byte("\x1f\x20\x03\xd5\xfd\x7b\xbf\xa9\xfd\x03\x00\x91mov x0, x1; ldr x2, [sp, #16]\x00printf(\"%d\\n\")\x00")
	for p := 0; p < size; p += 4096 {
		page := img[p:min(p+4096, size)]
		switch r.IntN(4) {
		case 0, 1:
		case 2:
			for i := range page {
				page[i] = byte(r.Uint32())
			}
		case 3:
			for i := 0; i < len(page); {
				k := r.IntN(len(code))
				i += copy(page[i:], code[k:])
				if i < len(page) {
					page[i] = byte(r.IntN(16))
					i++
				}
			}
		}
	}
	return img
}
