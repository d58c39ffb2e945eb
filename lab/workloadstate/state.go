// Package workloadstate is the contract between the lab workload (which publishes its state) and
// `ferry-lab check` (which proves from it that a migration lost nothing).
package workloadstate

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Paths inside the container.
const (
	StatePath  = "/run/ferry-workload/state.json" // on the container's /run tmpfs (moves with memory)
	VerifyPath = "/run/ferry-workload/verify"     // check writes a request id here; the answer is State.Verify
	TicksPath  = "/var/lib/ferry-workload/ticks"  // in the writable layer (moves with the filesystem)
	VolumeDest = "/data"                          // where a lab volume is mounted in the container
	TickEvery  = 10 * time.Millisecond            // the counter's period
	Publish    = 10                               // state and ticks are written every Publish ticks
)

// State is what the workload publishes.
type State struct {
	Nonce          string  `json:"nonce"` // random at start: a restart changes it
	PID            int     `json:"pid"`   // in the container's pid namespace
	StartedUnixMs  int64   `json:"started_unix_ms"`
	UpdatedUnixMs  int64   `json:"updated_unix_ms"`
	Counter        uint64  `json:"counter"` // +1 per tick, only in memory
	MemMiB         int     `json:"mem_mib"`
	DirtyMiBs      float64 `json:"dirty_mib_s"`
	Pages          int     `json:"pages"`
	DirtiedPages   uint64  `json:"dirtied_pages"`
	VerifyPasses   uint64  `json:"verify_passes"`     // completed full passes over all pages
	LastPassUnixMs int64   `json:"last_pass_unix_ms"` // when the last full pass ended
	LastPassStart  int64   `json:"last_pass_start_unix_ms"`
	Errors         uint64  `json:"errors"` // pages found not matching their expected content
	FirstError     string  `json:"first_error,omitempty"`
	TicksLines     uint64  `json:"ticks_lines"` // lines appended to TicksPath
	TicksError     string  `json:"ticks_error,omitempty"`

	// The volume: a file of VolumeMiB of blocks rewritten like memory pages, and a log of
	// counters appended like the ticks file.
	VolumeMiB        int    `json:"volume_mib,omitempty"`
	VolumeErrors     uint64 `json:"volume_errors,omitempty"`
	VolumeFirstError string `json:"volume_first_error,omitempty"`
	VolumeLogLines   uint64 `json:"volume_log_lines,omitempty"`
	VolumeError      string `json:"volume_error,omitempty"` // an I/O error on the volume

	Verify *Verification `json:"verify,omitempty"` // the answer to the last verification request
}

// Verification is a full pass over memory and volume, run on request.
type Verification struct {
	ID         string `json:"id"`
	MemErrors  uint64 `json:"mem_errors"`
	VolErrors  uint64 `json:"vol_errors"`
	FirstError string `json:"first_error,omitempty"`
	Ms         int64  `json:"ms"`
}

// Record is what the lab remembers of a workload it started.
type Record struct {
	Name        string    `json:"name"`
	Host        string    `json:"host"`
	Nonce       string    `json:"nonce"`
	MemMiB      int       `json:"mem_mib"`
	LastCounter uint64    `json:"last_counter"`
	Created     time.Time `json:"created"`
	Workload    bool      `json:"workload"`          // false when started with a custom command
	Volume      string    `json:"volume,omitempty"`  // host path of its volume, if any
	Dataset     string    `json:"dataset,omitempty"` // the volume's ZFS dataset, if any
}

// Verify checks two states read a little apart (s1 before s2, s2 carrying the answer to
// verification request id), the record, and the ticks and volume log contents. It returns every
// problem found; none means nothing was lost.
func Verify(rec Record, s1, s2 State, id string, ticks, volLog []byte) []string {
	var p []string
	if s2.Nonce != rec.Nonce {
		p = append(p, fmt.Sprintf("the workload is not the process that was started: nonce %q, want %q (it was restarted)", s2.Nonce, rec.Nonce))
	}
	if s2.PID != 1 {
		p = append(p, fmt.Sprintf("the workload runs as pid %d in its container, want 1", s2.PID))
	}
	if s2.Counter < rec.LastCounter {
		p = append(p, fmt.Sprintf("the counter went back: %d, it was already %d", s2.Counter, rec.LastCounter))
	}
	if s2.Counter <= s1.Counter || s2.UpdatedUnixMs <= s1.UpdatedUnixMs {
		p = append(p, fmt.Sprintf("the workload is not running: counter %d then %d", s1.Counter, s2.Counter))
	}
	if s2.MemMiB != rec.MemMiB {
		p = append(p, fmt.Sprintf("the workload holds %d MiB, want %d", s2.MemMiB, rec.MemMiB))
	}
	if s2.Errors > 0 {
		p = append(p, fmt.Sprintf("memory is corrupt: %d pages differ from their expected content (first: %s)", s2.Errors, s2.FirstError))
	}
	switch v := s2.Verify; {
	case v == nil || v.ID != id:
		p = append(p, "the workload did not answer the verification request")
	case v.MemErrors > 0 || v.VolErrors > 0:
		p = append(p, fmt.Sprintf("full verification: %d memory pages and %d volume blocks differ from their expected content (first: %s)", v.MemErrors, v.VolErrors, v.FirstError))
	}
	if rec.Volume != "" {
		if s2.VolumeMiB == 0 {
			p = append(p, "the workload has no volume, but it was started with "+rec.Volume)
		}
		if s2.VolumeErrors > 0 {
			p = append(p, fmt.Sprintf("the volume is corrupt: %d blocks differed (first: %s)", s2.VolumeErrors, s2.VolumeFirstError))
		}
		if s2.VolumeError != "" {
			p = append(p, "the workload cannot use its volume: "+s2.VolumeError)
		}
		for _, q := range checkLog(volLog, s2.VolumeLogLines, s2.Counter) {
			p = append(p, "volume log: "+q)
		}
	}
	if s2.TicksError != "" {
		p = append(p, "the workload cannot write its ticks file: "+s2.TicksError)
	}
	p = append(p, VerifyTicks(ticks, s2)...)
	return p
}

// VerifyTicks checks the ticks file: one line per publish, counters strictly consecutive
// (Publish apart), none beyond what the workload had counted when s was published.
func VerifyTicks(ticks []byte, s State) []string { return checkLog(ticks, s.TicksLines, s.Counter) }

// checkLog checks a file of counters appended every Publish ticks.
func checkLog(ticks []byte, written, counter uint64) []string {
	lines := bytes.Split(bytes.TrimSuffix(ticks, []byte("\n")), []byte("\n"))
	if len(ticks) == 0 {
		lines = nil
	}
	if uint64(len(lines)) < written {
		return []string{fmt.Sprintf("the file has %d lines, the workload wrote %d: filesystem writes were lost", len(lines), written)}
	}
	var prev uint64
	for i, l := range lines {
		v, err := strconv.ParseUint(string(l), 10, 64)
		if err != nil {
			return []string{fmt.Sprintf("line %d is %q: corrupt", i+1, l)}
		}
		if i > 0 && v != prev+Publish {
			return []string{fmt.Sprintf("line %d jumps from %d to %d: filesystem writes were lost or repeated", i+1, prev, v)}
		}
		prev = v
	}
	if len(lines) > 0 && prev > counter {
		return []string{fmt.Sprintf("the file ends at %d but the counter is only %d: the memory state is older than the filesystem", prev, counter)}
	}
	return nil
}

// WriteFile writes a file that readers see whole or not at all (a temporary file beside it,
// renamed): both sides read each other's files while they are being written.
func WriteFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
