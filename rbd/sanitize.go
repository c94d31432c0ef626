package rbd

import "strings"

// redacted replaces a secret wherever one would be shown.
const redacted = "***"

// Where secrets appear in what this package builds: the krbd option string
// ("name=admin,secret=AQ...") and the generic Ceph command-line option.
const (
	secretOption = "secret="
	keyFlag      = "--key"
)

// sanitizeArgs returns a copy of a command line that is safe to log or put in an
// error: "--key X", "--key=X" and any "secret=X" inside an argument are masked.
func sanitizeArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == keyFlag:
			out[i] = redacted
		case strings.HasPrefix(a, keyFlag+"="):
			out[i] = keyFlag + "=" + redacted
		default:
			out[i] = maskOptions(a)
		}
	}
	return out
}

// maskOptions masks the value of every "secret=" in s, up to the next separator of
// a krbd option string or command line.
func maskOptions(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, secretOption)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(secretOption)])
		b.WriteString(redacted)
		s = s[i+len(secretOption):]
		if end := strings.IndexAny(s, ", \t\n"); end >= 0 {
			s = s[end:]
		} else {
			s = ""
		}
	}
}

// sanitizeText masks secrets in free text (stderr, error messages): the option
// patterns, and the literal values in secrets wherever they occur, in case a tool
// echoes a key in some other form.
func sanitizeText(s string, secrets ...string) string {
	s = maskOptions(s)
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// sanitizedError presents err with secrets masked; errors.Is/As still see err.
type sanitizedError struct {
	err     error
	secrets []string
}

func (e *sanitizedError) Error() string { return sanitizeText(e.err.Error(), e.secrets...) }
func (e *sanitizedError) Unwrap() error { return e.err }

func sanitizeErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	return &sanitizedError{err: err, secrets: secrets}
}
