package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// The methods below make a Receiver the target of a migration (migrate.Target).

// Host is the target's name as the operator gave it.
func (r *Receiver) Host() string { return r.client.Endpoint.Host }

// Preflight asks the target whether it can take the container.
func (r *Receiver) Preflight(ctx context.Context, req wire.PreflightRequest) (wire.PreflightReply, error) {
	var reply wire.PreflightReply
	return reply, r.Conn.Call(ctx, wire.TypePreflight, req, &reply)
}

// Facts asks the target what it supports (ferry check); it changes nothing.
func (r *Receiver) Facts(ctx context.Context, req wire.FactsRequest) (wire.FactsReply, error) {
	var reply wire.FactsReply
	return reply, r.Conn.Call(ctx, wire.TypeFacts, req, &reply)
}

// Prepare creates the container on the target.
func (r *Receiver) Prepare(ctx context.Context, req wire.PrepareRequest) error {
	return r.Conn.Call(ctx, wire.TypePrepare, req, nil)
}

// Image asks which blobs of an image the target lacks.
func (r *Receiver) Image(ctx context.Context, req wire.ImageRequest) (wire.ImageReply, error) {
	var reply wire.ImageReply
	return reply, r.Conn.Call(ctx, wire.TypeImage, req, &reply)
}

// Restore restores the task (frozen) from the transferred images.
func (r *Receiver) Restore(ctx context.Context, req wire.RestoreRequest) (wire.RestoreReply, error) {
	var reply wire.RestoreReply
	return reply, r.Conn.Call(ctx, wire.TypeRestore, req, &reply)
}

// Commit tells the target to run the restored task.
func (r *Receiver) Commit(ctx context.Context, req wire.CommitRequest) (wire.CommitReply, error) {
	var reply wire.CommitReply
	return reply, r.Conn.Call(ctx, wire.TypeCommit, req, &reply)
}

// Failures asks what failed on the target's side of the migration's streams.
func (r *Receiver) Failures(ctx context.Context, id string) ([]string, error) {
	var reply wire.FailuresReply
	return reply.Failures, r.Conn.Call(ctx, wire.TypeFailures, wire.FailuresRequest{MigrationID: id}, &reply)
}

// Resident waits until a post-copy target has every page.
func (r *Receiver) Resident(ctx context.Context, req wire.ResidentRequest) (wire.ResidentReply, error) {
	var reply wire.ResidentReply
	return reply, r.Conn.Call(ctx, wire.TypeResident, req, &reply)
}

// Probe measures the link: it sends n bytes through a stream and returns bytes per second
// (until the target has counted them all).
func (r *Receiver) Probe(ctx context.Context, n int64) (float64, error) {
	s, err := r.OpenStream(ctx, wire.StreamHeader{Kind: wire.StreamProbe, Name: "probe"})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := int64(0); sent < n; sent += int64(len(buf)) {
		if _, err := s.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	var got wire.StreamSum
	env, err := wire.NewConnRW(s, io.Discard, nil).Recv()
	if err == nil {
		err = env.Decode(&got)
	}
	if err != nil {
		return 0, fmt.Errorf("link probe: %w", err)
	}
	d := time.Since(start)
	return float64(got.Bytes) / d.Seconds(), nil
}

// Abort undoes the migration on the target: over the control channel if it still works, else
// with `ferry-receiver abort ID` in a new session (reconnecting if the connection is gone).
func (r *Receiver) Abort(ctx context.Context, req wire.AbortRequest) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.Conn.Call(cctx, wire.TypeAbort, req, nil)
	cancel()
	if err == nil {
		return "aborted", nil
	}
	var re *wire.RemoteError
	if errors.As(err, &re) && errors.Is(re, errdefs.ErrPrecondition) {
		return "committed", err
	}
	// A partition ends the control channel (keepalive) but may heal soon: keep reconnecting
	// for a while, so that the target is left clean rather than to its own devices.
	st, oerr := r.outOfBand(ctx, "abort", req.MigrationID, AbortPatience)
	if oerr != nil {
		return st, fmt.Errorf("abort on %s: control channel: %v; out of band: %w", r.Host(), err, oerr)
	}
	return st, nil
}

// Status reads the migration's state on the target out of band.
func (r *Receiver) Status(ctx context.Context, id string) (string, error) {
	return r.outOfBand(ctx, "status", id, 0)
}

// AbortPatience is how long an abort keeps reconnecting to a target it cannot reach.
var AbortPatience = time.Minute

// outOfBand runs `ferry-receiver VERB ID` in a new session and returns the reported state. If
// no answer comes and the receiver can redial, it connects again: once, or, with patience,
// with backoff until patience has passed.
func (r *Receiver) outOfBand(ctx context.Context, verb, id string, patience time.Duration) (string, error) {
	cmd := fmt.Sprintf("%s %s %s", r.command, verb, shellQuote(id))
	st, answered, err := r.ask(ctx, r.client, cmd)
	deadline := time.Now().Add(patience)
	var dialErr error
	for wait := time.Duration(0); !answered && r.redial != nil && ctx.Err() == nil; wait = min(max(2*wait, time.Second), 5*time.Second) {
		if wait > 0 {
			if time.Now().Add(wait).After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				continue
			case <-time.After(wait):
			}
		}
		// The SSH connection itself may be gone: connect again.
		c, derr := r.redial(ctx)
		if derr == nil {
			r.client = c
			st, answered, err = r.ask(ctx, c, cmd)
		}
		dialErr = derr
		if patience == 0 {
			break
		}
	}
	if !answered && dialErr != nil {
		err = fmt.Errorf("%w; reconnecting: %v", err, dialErr)
	}
	return st, err
}

// ask runs cmd on c; answered says whether the receiver reported a state (its exit status may
// still be an error: abort refusing a committed migration).
func (r *Receiver) ask(ctx context.Context, c *Client, cmd string) (string, bool, error) {
	out, err := c.Run(ctx, cmd)
	var st struct {
		State string `json:"state"`
	}
	if jerr := json.Unmarshal(out, &st); jerr == nil && st.State != "" {
		return st.State, true, err
	}
	if err != nil {
		return "", false, err
	}
	return "", true, fmt.Errorf("%s: unreadable answer %q: %w", cmd, out, errdefs.ErrProtocol)
}

// Admin reaches ferry-receiver's out-of-band verbs (status, abort) without a serve session:
// what `ferry recover` needs. Each call runs `ferry-receiver VERB ID` in a new SSH session,
// which works on the target's journal under its lock.
type Admin struct{ r *Receiver }

// NewAdmin returns an Admin on c; command runs ferry-receiver (default "ferry-receiver").
func (c *Client) NewAdmin(command string, redial func(context.Context) (*Client, error)) *Admin {
	if command == "" {
		command = "ferry-receiver"
	}
	return &Admin{r: &Receiver{client: c, command: command, redial: redial}}
}

// Status reads the migration's state on the target.
func (a *Admin) Status(ctx context.Context, id string) (string, error) {
	return a.r.outOfBand(ctx, "status", id, 0)
}

// Abort undoes the migration on the target unless it committed (then it answers "committed"
// with an error).
func (a *Admin) Abort(ctx context.Context, req wire.AbortRequest) (string, error) {
	return a.r.outOfBand(ctx, "abort", req.MigrationID, 0)
}
