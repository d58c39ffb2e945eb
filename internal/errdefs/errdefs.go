// Package errdefs defines ferry's error classes. Errors are wrapped with %w so that callers decide
// with errors.Is: a conflict or an unsupported feature is permanent and is reported as a clear
// refusal; a transient error may be retried.
package errdefs

import "errors"

var (
	// ErrInvalid: the request itself is malformed (bad name, path escaping its directory, …).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the thing asked for does not exist (container, image, migration).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the thing to create already exists (container name taken on the target, …).
	ErrConflict = errors.New("conflict")
	// ErrUnsupported: a host lacks a feature the operation needs (CRIU too old, kernel feature, …).
	ErrUnsupported = errors.New("unsupported")
	// ErrPrecondition: the world is not in a state the operation can start from (not running,
	// not enough space, …).
	ErrPrecondition = errors.New("precondition failed")
	// ErrProtocol: the peer sent something that is not ferry's protocol (bad frame, wrong version).
	ErrProtocol = errors.New("protocol error")
	// ErrTransient: a link or peer failure that may succeed when retried.
	ErrTransient = errors.New("transient failure")
)

// Code returns the wire code of err's class ("" if none).
func Code(err error) string {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// FromCode returns the class error for a wire code, or nil.
func FromCode(code string) error {
	for _, c := range classes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

var classes = []struct {
	code string
	err  error
}{
	{"invalid", ErrInvalid},
	{"not_found", ErrNotFound},
	{"conflict", ErrConflict},
	{"unsupported", ErrUnsupported},
	{"precondition", ErrPrecondition},
	{"protocol", ErrProtocol},
	{"transient", ErrTransient},
}
