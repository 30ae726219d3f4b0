package snapshot

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Seal records the identity of every entry of an unpacked image directory,
// so that a directory verified once (checksum of the downloaded object) can
// be trusted for many restores without hashing it again. Each entry's inode
// and ctime are kept: the kernel sets ctime on any change to data, size,
// mode or links, and no system call sets it back, so even root cannot alter
// a file and leave its stat unchanged short of changing the clock.
type Seal struct {
	Entries []SealEntry `json:"entries"`
}

// SealEntry is one sealed file or directory.
type SealEntry struct {
	// Name is slash-separated and relative to the sealed directory, which
	// itself is ".".
	Name  string      `json:"name"`
	Mode  fs.FileMode `json:"mode"`
	Size  int64       `json:"size"`
	Dev   uint64      `json:"dev"`
	Inode uint64      `json:"inode"`
	// Ctime is in nanoseconds since the Unix epoch.
	Ctime int64 `json:"ctime"`
}

// sealAttempts bounds how often SealDir restarts because the directory
// changed while it was being sealed.
const sealAttempts = 5

// SealDir makes dir read-only (files 0400, directories 0500) and seals it.
// It accepts only directories and regular files, which is all Unpack
// creates.
func SealDir(dir string) (Seal, error) {
	// Check everything before changing anything.
	modes := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			modes[path] = 0o500
		case d.Type().IsRegular():
			modes[path] = 0o400
		default:
			return fmt.Errorf("%s: %s is not a regular file", path, d.Type())
		}
		return nil
	})
	if err != nil {
		return Seal{}, fmt.Errorf("seal %s: %w", dir, err)
	}
	for path, mode := range modes {
		if err := os.Chmod(path, mode); err != nil {
			return Seal{}, fmt.Errorf("seal %s: %w", dir, err)
		}
	}
	seal, err := sealOf(dir)
	if err != nil {
		return Seal{}, err
	}
	// Timestamps come from a clock that advances in ticks of a few
	// milliseconds. A change in the tick of the newest recorded ctime would
	// keep that ctime, so wait for the tick to pass and look again: if
	// nothing moved by then, every later change gets a later ctime.
	for range sealAttempts {
		if err := waitPast(seal.newest()); err != nil {
			return Seal{}, fmt.Errorf("seal %s: %w", dir, err)
		}
		again, err := sealOf(dir)
		if err != nil {
			return Seal{}, err
		}
		if slices.Equal(again.Entries, seal.Entries) {
			return seal, nil
		}
		seal = again
	}
	return Seal{}, fmt.Errorf("seal %s: it keeps changing while being sealed", dir)
}

// Verify checks that dir is still exactly what was sealed: the same entries,
// each with the same type, size, inode and ctime. It costs one stat per
// entry and reads no data. A difference is an error wrapping ErrCorrupt
// that names the entry.
func (s Seal) Verify(dir string) error {
	if len(s.Entries) == 0 {
		return fmt.Errorf("verify %s: empty seal: %w", dir, ErrCorrupt)
	}
	now, err := sealOf(dir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	// A directory put in the sealed one's place differs everywhere; say so.
	if r, ok := s.root(); ok {
		if n, ok := now.root(); ok && (r.Dev != n.Dev || r.Inode != n.Inode) {
			return fmt.Errorf("verify %s: %w: the directory %s", dir, ErrCorrupt, r.diff(n))
		}
	}
	// Adding, removing or renaming a file changes its directory too;
	// report the file, which says more.
	var fileDiff, dirDiff string
	note := func(isDir bool, what string) {
		switch {
		case !isDir && fileDiff == "":
			fileDiff = what
		case isDir && dirDiff == "":
			dirDiff = what
		}
	}
	i, j := 0, 0
	for i < len(s.Entries) || j < len(now.Entries) {
		switch {
		case j == len(now.Entries) || (i < len(s.Entries) && s.Entries[i].Name < now.Entries[j].Name):
			note(s.Entries[i].Mode.IsDir(), s.Entries[i].Name+" was removed")
			i++
		case i == len(s.Entries) || now.Entries[j].Name < s.Entries[i].Name:
			note(now.Entries[j].Mode.IsDir(), now.Entries[j].Name+" was added")
			j++
		default:
			if what := s.Entries[i].diff(now.Entries[j]); what != "" {
				note(s.Entries[i].Mode.IsDir(), s.Entries[i].Name+" "+what)
			}
			i++
			j++
		}
	}
	if fileDiff == "" {
		fileDiff = dirDiff
	}
	if fileDiff != "" {
		return fmt.Errorf("verify %s: %w: %s", dir, ErrCorrupt, fileDiff)
	}
	return nil
}

func (e SealEntry) diff(now SealEntry) string {
	switch {
	case e.Dev != now.Dev || e.Inode != now.Inode:
		return fmt.Sprintf("was replaced (inode %d:%d, now %d:%d)", e.Dev, e.Inode, now.Dev, now.Inode)
	case e.Mode != now.Mode:
		return fmt.Sprintf("changed mode from %s to %s", e.Mode, now.Mode)
	case e.Size != now.Size:
		return fmt.Sprintf("changed size from %d to %d bytes", e.Size, now.Size)
	case e.Ctime != now.Ctime:
		return fmt.Sprintf("was modified at %s (sealed at %s)",
			time.Unix(0, now.Ctime).UTC().Format(time.RFC3339Nano), time.Unix(0, e.Ctime).UTC().Format(time.RFC3339Nano))
	}
	return ""
}

// sealOf stats every entry of dir, in WalkDir's lexical order.
func sealOf(dir string) (Seal, error) {
	var s Seal
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode information", path)
		}
		s.Entries = append(s.Entries, SealEntry{
			Name: filepath.ToSlash(rel), Mode: info.Mode(), Size: info.Size(),
			Dev: st.Dev, Inode: st.Ino, Ctime: st.Ctim.Nano(),
		})
		return nil
	})
	if err != nil {
		return Seal{}, fmt.Errorf("seal %s: %w", dir, err)
	}
	// WalkDir visits "a" before "a/b" but "a/b" after "a-c"; order by name so
	// Verify can merge the two lists.
	slices.SortFunc(s.Entries, func(a, b SealEntry) int { return cmp.Compare(a.Name, b.Name) })
	return s, nil
}

func (s Seal) root() (SealEntry, bool) {
	for _, e := range s.Entries {
		if e.Name == "." {
			return e, true
		}
	}
	return SealEntry{}, false
}

func (s Seal) newest() int64 {
	var t int64
	for _, e := range s.Entries {
		t = max(t, e.Ctime)
	}
	return t
}

// waitPast sleeps until the coarse clock, which file timestamps come from,
// is past t.
func waitPast(t int64) error {
	for range 1000 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
			return fmt.Errorf("clock: %w", err)
		}
		if ts.Nano() > t {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("the clock does not advance past the files' ctime")
}
