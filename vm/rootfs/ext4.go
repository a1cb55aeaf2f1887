package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// fsTime is the creation time that mke2fs and debugfs stamp on the file
// system and on inodes they create (1980-01-01, the zip epoch), so the
// image does not depend on when it was built.
const fsTime = 315532800

// mke2fsConfig replaces /etc/mke2fs.conf, which differs between hosts, so
// the features of the image depend only on this file.
const mke2fsConfig = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// e2fsprogs runs mke2fs and debugfs, from PATH or from a directory that
// SPORE_E2FSPROGS names.
type e2fsprogs struct {
	mke2fs  []string // argv prefix
	debugfs []string
	version string // the first line of mke2fs -V
}

// e2fsprogsEnv names a directory with e2fsprogs unpacked from Debian
// packages (sbin/mke2fs, sbin/debugfs, their libraries and the dynamic
// loader), for hosts such as the testbed that have no e2fsprogs installed.
const e2fsprogsEnv = "SPORE_E2FSPROGS"

// findE2fsprogs locates mke2fs and debugfs and reads their version, which
// is part of the cache key because another version writes other bytes.
func findE2fsprogs(ctx context.Context) (*e2fsprogs, error) {
	tools := &e2fsprogs{}
	if dir := os.Getenv(e2fsprogsEnv); dir != "" {
		prefix, err := unpackedLoader(dir)
		if err != nil {
			return nil, err
		}
		tools.mke2fs = append(prefix, filepath.Join(dir, "sbin/mke2fs"))
		tools.debugfs = append(append([]string{}, prefix...), filepath.Join(dir, "sbin/debugfs"))
	} else {
		for _, tool := range []struct {
			name string
			argv *[]string
		}{{"mke2fs", &tools.mke2fs}, {"debugfs", &tools.debugfs}} {
			path, err := lookPathSbin(tool.name)
			if err != nil {
				return nil, fmt.Errorf("%s not found: %w (install e2fsprogs, or set %s to a directory with e2fsprogs unpacked)", tool.name, err, e2fsprogsEnv)
			}
			*tool.argv = []string{path}
		}
	}

	cmd := exec.CommandContext(ctx, tools.mke2fs[0], append(tools.mke2fs[1:], "-V")...)
	output, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("run %s -V: %w: %s", strings.Join(tools.mke2fs, " "), err, bytes.TrimSpace(output))
	}
	tools.version, _, _ = strings.Cut(string(output), "\n")
	return tools, nil
}

// lookPathSbin finds a tool on PATH or in the sbin directories, which an
// ordinary user's PATH often lacks.
func lookPathSbin(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return exec.LookPath(name)
}

// unpackedLoader returns the argv prefix that runs a program from dir
// through dir's own dynamic loader and libraries.
func unpackedLoader(dir string) ([]string, error) {
	loaders, _ := filepath.Glob(filepath.Join(dir, "lib*/ld-linux*.so*"))
	more, _ := filepath.Glob(filepath.Join(dir, "usr/lib*/ld-linux*.so*"))
	loaders = append(loaders, more...)
	if len(loaders) == 0 {
		return nil, fmt.Errorf("%s=%s has no lib/ld-linux*.so dynamic loader; unpack libc6 there with the e2fsprogs packages", e2fsprogsEnv, dir)
	}
	var libDirs []string
	for _, pattern := range []string{"lib", "lib/*-linux-gnu", "usr/lib", "usr/lib/*-linux-gnu"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		libDirs = append(libDirs, matches...)
	}
	return []string{loaders[0], "--library-path", strings.Join(libDirs, ":")}, nil
}

// imageSize returns the ext4 size for the emitted tree: data, inode
// tables and journal, plus a quarter of the data and 64 MiB of free space
// for the guest. The file is sparse, so free space costs no disk.
func imageSize(out *emitted) (size int64, inodes int64) {
	inodes = max(out.inodes*2, 16384)
	data := out.blocks * 4096
	size = data + data/4 + inodes*256 + 64<<20 + 64<<20
	return (size + 1<<20 - 1) &^ (1<<20 - 1), inodes
}

// makeExt4 formats path as ext4 from rootDir and runs script on it with
// debugfs. seed (the manifest digest and platform) fixes the UUID and
// directory hash seed, so one image always gives the same bytes.
func (tools *e2fsprogs) makeExt4(ctx context.Context, log *slog.Logger, path, rootDir, buildDir string, out *emitted, seed string) error {
	configPath := filepath.Join(buildDir, "mke2fs.conf")
	if err := os.WriteFile(configPath, []byte(mke2fsConfig), 0o600); err != nil {
		return err
	}
	env := append(os.Environ(),
		"MKE2FS_CONFIG="+configPath,
		"E2FSPROGS_FAKE_TIME="+strconv.Itoa(fsTime),
		"MKE2FS_DEVICE_SECTSIZE=512",
		"MKE2FS_DEVICE_PHYS_SECTSIZE=512",
		"LC_ALL=C",
	)

	size, inodes := imageSize(out)
	uuid := uuidFrom(seed)
	args := []string{
		"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
		"-N", strconv.FormatInt(inodes, 10),
		"-U", uuid,
		"-E", "hash_seed=" + uuid + ",root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
		"-d", rootDir,
		path, strconv.FormatInt(size/1024, 10) + "k",
	}
	if err := run(ctx, env, tools.mke2fs, args...); err != nil {
		return err
	}

	log.Debug("mke2fs done", "image", path, "bytes", size)
	scriptPath := filepath.Join(buildDir, "debugfs.script")
	if err := os.WriteFile(scriptPath, []byte(out.script.String()), 0o600); err != nil {
		return err
	}
	if err := runDebugfs(ctx, env, tools.debugfs, scriptPath, path); err != nil {
		return err
	}
	return clearWriteCounter(path)
}

// runDebugfs runs a debugfs script. debugfs exits 0 even when a command
// fails, so any line on stderr other than its version banner is an error.
func runDebugfs(ctx context.Context, env, argv []string, scriptPath, imagePath string) error {
	args := append(argv[1:len(argv):len(argv)], "-w", "-f", scriptPath, imagePath)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var problems []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "debugfs ") {
			continue
		}
		problems = append(problems, line)
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return fmt.Errorf("debugfs failed to apply owners, modes and device nodes: %s", strings.Join(problems, "; "))
	}
	return nil
}

// run runs a tool and includes its output in the error.
func run(ctx context.Context, env, argv []string, args ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:len(argv):len(argv)], args...)...)
	cmd.Env = env
	output, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(argv[len(argv)-1]), err, bytes.TrimSpace(output))
	}
	return nil
}

// uuidFrom derives a version 4 style UUID from seed.
func uuidFrom(seed string) string {
	sum := sha256.Sum256([]byte("spore rootfs uuid\n" + seed))
	sum[6] = sum[6]&0x0f | 0x40
	sum[8] = sum[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}
