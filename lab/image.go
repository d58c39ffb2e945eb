package lab

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ImageRef is the lab image: busybox and the workload, built locally (no registry).
const ImageRef = "localhost/ferry-lab/workload:latest"

// BuildImage writes the lab image as an OCI layout tar and returns its path. The build is
// deterministic: the same inputs give the same digests on every host.
func BuildImage(bin string) (string, error) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if fileExists(p) {
				busybox = p
			}
		}
		if busybox == "" {
			return "", fmt.Errorf("busybox-static is not installed: %w", err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	wl, err := os.ReadFile(filepath.Join(bin, "ferry-workload"))
	if err != nil {
		return "", err
	}
	extra, err := redisFiles()
	if err != nil {
		return "", err
	}
	layer, err := buildLayer(bb, strings.Fields(string(out)), wl, extra)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(StateDir, "image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "workload.tar")
	b, err := ociArchive(layer)
	if err != nil {
		return "", err
	}
	return p, os.WriteFile(p, b, 0o644)
}

type entry struct {
	hdr  tar.Header
	data []byte
}

// RedisServer is where the lab image has Debian's redis-server (when the host has it).
const RedisServer = "/usr/bin/redis-server"

// redisFiles returns the host's redis-server and the shared libraries it loads, at the paths
// the loader finds them (files, not symlinks: the image has no /lib -> usr/lib). None if the
// host has no redis-server.
func redisFiles() ([]entry, error) {
	bin, err := filepath.EvalSymlinks(RedisServer)
	if err != nil {
		return nil, nil
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	paths := map[string]string{RedisServer: bin} // image path -> host file
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				paths[f] = f
			}
		}
	}
	var es []entry
	for p, src := range paths {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		es = append(es, entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(b))}, data: b})
	}
	return es, nil
}

func buildLayer(busybox []byte, applets []string, workload []byte, extra []entry) ([]byte, error) {
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch}}
	}
	file := func(name string, mode int64, data []byte) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}, data: data}
	}
	es := []entry{
		dir("bin", 0o755), dir("dev", 0o755), dir("etc", 0o755), dir("proc", 0o755), dir("root", 0o700),
		dir("run", 0o755), dir("sys", 0o755), dir("tmp", 0o1777), dir("usr", 0o755), dir("usr/local", 0o755),
		dir("usr/local/bin", 0o755), dir("var", 0o755), dir("var/lib", 0o755), dir("var/lib/ferry-workload", 0o755),
		file("bin/busybox", 0o755, busybox),
		file("usr/local/bin/ferry-workload", 0o755, workload),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")),
		file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
	}
	sort.Strings(applets)
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		es = append(es, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}})
	}
	// Extra files, sorted, each after the directories it needs that the layer lacks.
	sort.Slice(extra, func(i, j int) bool { return extra[i].hdr.Name < extra[j].hdr.Name })
	have := map[string]bool{}
	for _, e := range es {
		have[strings.TrimSuffix(e.hdr.Name, "/")] = true
	}
	for _, e := range extra {
		parts := strings.Split(e.hdr.Name, "/")
		for i := 1; i < len(parts); i++ {
			if d := strings.Join(parts[:i], "/"); !have[d] {
				have[d] = true
				es = append(es, dir(d, 0o755))
			}
		}
		if !have[e.hdr.Name] {
			have[e.hdr.Name] = true
			e.hdr.ModTime = epoch
			es = append(es, e)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// ociArchive wraps one uncompressed layer into an OCI image layout tar.
func ociArchive(layer []byte) ([]byte, error) {
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "1970-01-01T00:00:00Z",
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Entrypoint": []string{"/usr/local/bin/ferry-workload"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer)}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(config), Size: int64(len(config))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: digest(layer), Size: int64(len(layer))}},
	})
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []descriptor{{
			MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest(manifest), Size: int64(len(manifest)),
			Annotations: map[string]string{"io.containerd.image.name": ImageRef, "org.opencontainers.image.ref.name": "latest"},
			Platform:    map[string]string{"architecture": "amd64", "os": "linux"},
		}},
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	files := []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + strings.TrimPrefix(digest(config), "sha256:"), config},
		{"blobs/sha256/" + strings.TrimPrefix(digest(manifest), "sha256:"), manifest},
		{"blobs/sha256/" + strings.TrimPrefix(digest(layer), "sha256:"), layer},
	}
	for _, f := range files {
		if err := add(f.name, f.b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
