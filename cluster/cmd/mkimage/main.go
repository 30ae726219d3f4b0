// Command mkimage writes an image as a docker-archive tar (what `docker
// save` writes and what `ctr images import` reads), so the dev cluster needs
// no registry and no Docker. Two forms:
//
//	mkimage -o pause.tar -name pronghorn.local/pause:1 -bin ./pause
//
// packs one static binary at /<basename> as the entrypoint, plus an empty
// /tmp (what cluster/up.sh uses), and
//
//	mkimage -o node.tar -name pronghorn.local/counter-node -tag auto \
//	    -layer base.list -layer node.list -layer app.list \
//	    -function benchmarks/functions/counter-node -workdir /home/app
//
// packs host files into one layer per list file (cluster/images/build.sh
// writes them). A list has one directive per line; blank lines and lines
// starting with # are ignored:
//
//	path HOSTPATH         the host file, directory (recursively) or symlink at
//	                      the same place in the image; every symlink met on
//	                      the way (/lib -> usr/lib, libfoo.so.1 -> libfoo.so.1.2)
//	                      is reproduced and followed, so the image resolves
//	                      HOSTPATH exactly as the host does. Globs are expanded.
//	copy DEST HOSTPATH    HOSTPATH's content at DEST (directories recursively;
//	                      symlinks inside a directory are kept as they are)
//	link DEST TARGET      a symlink
//	dir DEST [MODE]       a directory (octal MODE, default 755)
//	exclude DEST          leave out DEST and everything under it (applies to
//	                      the whole list, wherever it appears)
//
// A path already written by an earlier layer is not repeated. Every entry
// has owner 0:0 and modification time 0, and entries are sorted, so the same
// inputs always give the same layer, config and image digests. -tag auto
// tags the image with the first 12 hex digits of its config digest (its
// image ID), so a changed image never hides behind an old tag; -ref-file
// receives the full reference. The archive is rewritten only when the image
// ID differs from the one recorded in OUTPUT.id: an unchanged image costs
// one read of its inputs.
//
// -function DIR reads an OpenFaaS-style DIR/function.json
// ({"fprocess": "...", "env": {...}}) into the image's environment, as a
// template's `ENV fprocess=...` would.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

var epoch = time.Unix(0, 0)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mkimage: ")
	out := flag.String("o", "", "output tar file")
	name := flag.String("name", "", "image reference, e.g. pronghorn.local/pause:1 (without a tag when -tag is given)")
	tag := flag.String("tag", "", "tag to add to -name; auto: the first 12 hex digits of the image ID")
	refFile := flag.String("ref-file", "", "write the image's full reference to this file")
	bin := flag.String("bin", "", "static binary to use as the entrypoint (single-binary form)")
	workdir := flag.String("workdir", "/", "the image's working directory")
	entrypoint := flag.String("entrypoint", "", "the image's entrypoint, as a JSON array")
	function := flag.String("function", "", "directory whose function.json gives fprocess and env")
	var layers, envs listFlag
	flag.Var(&layers, "layer", "list file of one layer (repeatable, bottom layer first)")
	flag.Var(&envs, "env", "KEY=VALUE in the image's environment (repeatable)")
	flag.Parse()
	if *out == "" || *name == "" || (*bin == "") == (len(layers) == 0) || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o OUT.tar -name REF (-bin BINARY | -layer LIST...) [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}

	img := image{workdir: *workdir}
	if *bin != "" {
		entry := "/" + filepath.Base(*bin)
		l := newLayer()
		must(l.add(entry[1:], &node{kind: tar.TypeReg, mode: 0o755, src: *bin}))
		must(l.add("tmp", &node{kind: tar.TypeDir, mode: 0o1777}))
		img.layers = append(img.layers, l)
		img.entrypoint = []string{entry}
	}
	for _, f := range layers {
		l, err := readList(f)
		if err != nil {
			log.Fatal(err)
		}
		img.layers = append(img.layers, l)
	}
	// Paths of earlier layers are not repeated (directories are: a layer
	// carries the parents of what it adds).
	seen := map[string]bool{}
	for _, l := range img.layers {
		for p, n := range l.nodes {
			if n.kind != tar.TypeDir && seen[p] {
				delete(l.nodes, p)
			}
		}
		for p, n := range l.nodes {
			if n.kind != tar.TypeDir {
				seen[p] = true
			}
		}
		l.addParents()
	}
	if *entrypoint != "" {
		if err := json.Unmarshal([]byte(*entrypoint), &img.entrypoint); err != nil {
			log.Fatalf("-entrypoint: %v", err)
		}
	}
	env := map[string]string{}
	var order []string
	setEnv := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	if *function != "" {
		fp, fenv, err := readFunction(*function)
		if err != nil {
			log.Fatal(err)
		}
		setEnv("fprocess", fp)
		keys := make([]string, 0, len(fenv))
		for k := range fenv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			setEnv(k, fenv[k])
		}
	}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			log.Fatalf("-env %q: want KEY=VALUE", kv)
		}
		setEnv(k, v)
	}
	for _, k := range order {
		img.env = append(img.env, k+"="+env[k])
	}

	start := time.Now()
	// Pass 1: the layers' digests and sizes, hence the config and image ID.
	for i, l := range img.layers {
		h := sha256.New()
		n, err := l.write(h)
		if err != nil {
			log.Fatalf("layer %d: %v", i+1, err)
		}
		l.size, l.diffID = n, hex.EncodeToString(h.Sum(nil))
	}
	config := img.config()
	sum := sha256.Sum256(config)
	id := hex.EncodeToString(sum[:])
	ref := *name
	switch *tag {
	case "":
	case "auto":
		ref += ":" + id[:12]
	default:
		ref += ":" + *tag
	}
	stamp := id + " " + ref + "\n"
	if old, err := os.ReadFile(*out + ".id"); err == nil && string(old) == stamp {
		if _, err := os.Stat(*out); err == nil {
			log.Printf("%s: cached (%s, checked in %s)", ref, *out, time.Since(start).Round(time.Millisecond))
			writeRef(*refFile, ref)
			return
		}
	}

	// Pass 2: the archive, written next to its destination and renamed.
	f, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
	must(err)
	tmp := f.Name()
	defer os.Remove(tmp) // after a failure; renamed away otherwise
	w := tar.NewWriter(f)
	var layerNames []string
	var total int64
	for i, l := range img.layers {
		lname := l.diffID + "/layer.tar"
		layerNames = append(layerNames, lname)
		must(w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: l.diffID + "/", Mode: 0o755, ModTime: epoch}))
		must(w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: lname, Mode: 0o644, Size: l.size, ModTime: epoch}))
		h := sha256.New()
		n, err := l.write(io.MultiWriter(w, h))
		if err != nil {
			log.Fatalf("layer %d: %v", i+1, err)
		}
		if n != l.size || hex.EncodeToString(h.Sum(nil)) != l.diffID {
			log.Fatalf("layer %d changed while it was written (an input file changed); run again", i+1)
		}
		total += n
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config": id + ".json", "RepoTags": []string{ref}, "Layers": layerNames,
	}})
	must(err)
	for _, e := range []struct {
		name string
		data []byte
	}{{id + ".json", config}, {"manifest.json", manifest}} {
		must(w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}))
		_, err = w.Write(e.data)
		must(err)
	}
	must(w.Close())
	must(f.Close())
	must(os.Chmod(tmp, 0o644))
	must(os.Rename(tmp, *out))
	must(os.WriteFile(*out+".id", []byte(stamp), 0o644))
	log.Printf("%s: wrote %s (%d layers, %.1f MB) in %s", ref, *out, len(img.layers), float64(total)/1e6,
		time.Since(start).Round(time.Millisecond))
	writeRef(*refFile, ref)
}

func writeRef(file, ref string) {
	if file != "" {
		must(os.WriteFile(file, []byte(ref+"\n"), 0o644))
	}
}

func readFunction(dir string) (string, map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "function.json"))
	if err != nil {
		return "", nil, err
	}
	var fn struct {
		Fprocess string            `json:"fprocess"`
		Env      map[string]string `json:"env"`
	}
	if err := json.Unmarshal(b, &fn); err != nil {
		return "", nil, fmt.Errorf("%s/function.json: %w", dir, err)
	}
	if strings.TrimSpace(fn.Fprocess) == "" {
		return "", nil, fmt.Errorf("%s/function.json has no fprocess", dir)
	}
	return fn.Fprocess, fn.Env, nil
}

type image struct {
	layers     []*layer
	env        []string
	workdir    string
	entrypoint []string
}

// config is the image config: what containerd reads for the environment,
// working directory and rootfs.
func (img *image) config() []byte {
	var diffIDs []string
	for _, l := range img.layers {
		diffIDs = append(diffIDs, "sha256:"+l.diffID)
	}
	cfg := map[string]any{"WorkingDir": img.workdir}
	if len(img.entrypoint) > 0 {
		cfg["Entrypoint"] = img.entrypoint
	}
	if len(img.env) > 0 {
		cfg["Env"] = img.env
	}
	b, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	must(err)
	return b
}

// node is one entry of a layer.
type node struct {
	kind   byte // tar.TypeReg, TypeDir or TypeSymlink
	mode   int64
	src    string // host file of a regular file
	target string // of a symlink
}

type layer struct {
	nodes    map[string]*node // by path relative to /, no leading slash
	excludes []string
	size     int64
	diffID   string
}

func newLayer() *layer { return &layer{nodes: map[string]*node{}} }

// add records n at p (relative, cleaned). The same path twice must mean
// the same thing.
func (l *layer) add(p string, n *node) error {
	if old, ok := l.nodes[p]; ok {
		if *old != *n && !(old.kind == tar.TypeDir && n.kind == tar.TypeDir) {
			return fmt.Errorf("/%s given twice, differently (%+v, %+v)", p, *old, *n)
		}
		return nil
	}
	l.nodes[p] = n
	return nil
}

func (l *layer) excluded(p string) bool {
	for _, e := range l.excludes {
		if p == e || strings.HasPrefix(p, e+"/") {
			return true
		}
	}
	return false
}

// addParents gives every entry its parent directories.
func (l *layer) addParents() {
	for p := range l.nodes {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := l.nodes[d]; ok {
				continue
			}
			l.nodes[d] = &node{kind: tar.TypeDir, mode: 0o755}
		}
	}
}

// write streams the layer tar to w and returns its size.
func (l *layer) write(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	paths := make([]string, 0, len(l.nodes))
	for p := range l.nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		n := l.nodes[p]
		h := &tar.Header{Typeflag: n.kind, Name: p, Mode: n.mode, ModTime: epoch}
		switch n.kind {
		case tar.TypeDir:
			h.Name += "/"
			if err := tw.WriteHeader(h); err != nil {
				return 0, err
			}
		case tar.TypeSymlink:
			h.Linkname = n.target
			if err := tw.WriteHeader(h); err != nil {
				return 0, err
			}
		case tar.TypeReg:
			f, err := os.Open(n.src)
			if err != nil {
				return 0, err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return 0, err
			}
			h.Size = fi.Size()
			if err := tw.WriteHeader(h); err != nil {
				f.Close()
				return 0, err
			}
			c, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return 0, fmt.Errorf("%s: %w", n.src, err)
			}
			if c != h.Size {
				return 0, fmt.Errorf("%s changed size while read", n.src)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readList parses a layer's list file.
func readList(file string) (*layer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	l := newLayer()
	type op struct {
		line   int
		fields []string
	}
	var ops []op
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] == "exclude" {
			if len(f) != 2 || !path.IsAbs(f[1]) {
				return nil, fmt.Errorf("%s:%d: want: exclude /DEST", file, i+1)
			}
			l.excludes = append(l.excludes, rel(f[1]))
			continue
		}
		ops = append(ops, op{i + 1, f})
	}
	for _, o := range ops {
		f := o.fields
		where := fmt.Sprintf("%s:%d", file, o.line)
		var err error
		switch {
		case f[0] == "path" && len(f) == 2:
			var matches []string
			matches, err = filepath.Glob(f[1])
			if err == nil && len(matches) == 0 {
				err = fmt.Errorf("%s: no such file", f[1])
			}
			for _, m := range matches {
				if err = l.addHostPath(m, 0); err != nil {
					break
				}
			}
		case f[0] == "copy" && len(f) == 3 && path.IsAbs(f[1]):
			err = l.addTree(rel(f[1]), f[2])
		case f[0] == "link" && len(f) == 3 && path.IsAbs(f[1]):
			if !l.excluded(rel(f[1])) {
				err = l.add(rel(f[1]), &node{kind: tar.TypeSymlink, mode: 0o777, target: f[2]})
			}
		case f[0] == "dir" && (len(f) == 2 || len(f) == 3) && path.IsAbs(f[1]):
			mode := int64(0o755)
			if len(f) == 3 {
				mode, err = strconv.ParseInt(f[2], 8, 64)
			}
			if err == nil && !l.excluded(rel(f[1])) {
				err = l.add(rel(f[1]), &node{kind: tar.TypeDir, mode: mode})
			}
		default:
			err = errors.New("want one of: path HOSTPATH, copy /DEST HOSTPATH, link /DEST TARGET, dir /DEST [MODE], exclude /DEST")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return l, nil
}

func rel(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

// addHostPath adds host path p at the same place, reproducing every
// symlink on the way and following it.
func (l *layer) addHostPath(p string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	p, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if !l.excluded(rel(next)) {
				if err := l.add(rel(next), &node{kind: tar.TypeSymlink, mode: 0o777, target: target}); err != nil {
					return err
				}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return l.addHostPath(filepath.Join(append([]string{target}, parts[i+1:]...)...), depth+1)
		}
		cur = next
	}
	return l.addTree(rel(cur), cur)
}

// addTree adds host path src at dest: a file, a symlink as it is, or a
// directory with everything under it.
func (l *layer) addTree(dest, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dest, filepath.ToSlash(r))
		if l.excluded(target) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSetuid != 0 {
			mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		switch {
		case fi.Mode().IsRegular():
			return l.add(target, &node{kind: tar.TypeReg, mode: mode, src: p})
		case fi.IsDir():
			return l.add(target, &node{kind: tar.TypeDir, mode: mode})
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return l.add(target, &node{kind: tar.TypeSymlink, mode: 0o777, target: t})
		default:
			// Devices, sockets, fifos: nothing an image needs.
			return nil
		}
	})
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
