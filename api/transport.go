package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// maxFormBytes bounds a request body; the largest legitimate form (a host
// group's member list) is a few KiB.
const maxFormBytes = 1 << 20

const formKey = "ceph-iscsi.form"

// form is a request's parameters: the form-encoded body, for every method
// (upstream's clients send bodies on GET and DELETE too), then the query
// string, which the Dashboard uses for GETs. Absent and empty differ, as they
// do upstream, where python-requests drops None-valued keys.
type form struct{ body, query url.Values }

func (f form) lookup(key string) (string, bool) {
	if v, ok := f.body[key]; ok && len(v) > 0 {
		return v[0], true
	}
	if v, ok := f.query[key]; ok && len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// get is Flask's request.form.get(key, def).
func (f form) get(key, def string) string {
	if v, ok := f.lookup(key); ok {
		return v
	}
	return def
}

func params(c echo.Context) (form, error) {
	if f, ok := c.Get(formKey).(form); ok {
		return f, nil
	}
	r := c.Request()
	f := form{query: r.URL.Query(), body: url.Values{}}
	if r.Body != nil {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct == "application/x-www-form-urlencoded" {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxFormBytes+1))
			if err != nil {
				return form{}, fmt.Errorf("read request body: %w", err)
			}
			if len(b) > maxFormBytes {
				return form{}, httpErr(http.StatusRequestEntityTooLarge, "request body too large")
			}
			v, err := url.ParseQuery(string(b))
			if err != nil {
				return form{}, httpErr(http.StatusBadRequest, "malformed form body")
			}
			f.body = v
		}
	}
	c.Set(formKey, f)
	return f, nil
}

// param returns a path parameter decoded: echo matches on the raw path when
// it has escapes, and leaves them in the parameter.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// httpError is a response decided by a handler: upstream's status and text.
type httpError struct {
	Status int
	Msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func httpErr(status int, format string, args ...any) *httpError {
	if len(args) == 0 {
		return &httpError{Status: status, Msg: format}
	}
	return &httpError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// handleError is the one place errors become responses. Client mistakes keep
// upstream's message text but get a 4xx even where upstream crashed into a
// 500; only the unexpected is a 500, worded as upstream's global handler.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := s.classify(err)
	if status >= 500 {
		s.Logger.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if err := writeJSON(c, status, map[string]any{"message": msg}); err != nil {
		s.Logger.Warn("writing error response", "err", err)
	}
}

func (s *server) classify(err error) (int, string) {
	var he *httpError
	var rej *config.Rejection
	var ge *config.GroupError
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		return he.Status, he.Msg
	case errors.As(err, &ge):
		return http.StatusBadRequest, ge.Msg
	case errors.As(err, &rej):
		return statusOf(rej.Kind), rej.Msg
	case errors.As(err, &ee):
		return ee.Code, fmt.Sprint(ee.Message)
	case errors.As(err, new(*config.NameError)):
		// A commit refused for a new invalid name: the request's mistake.
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, config.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, config.ErrExists), errors.Is(err, config.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, rados.ErrLockTimeout):
		return http.StatusServiceUnavailable, "Unhandled exception: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "Unhandled exception: " + err.Error()
	}
	return http.StatusInternalServerError, "Unhandled exception: " + err.Error()
}

func statusOf(kind error) int {
	switch {
	case errors.Is(kind, config.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(kind, config.ErrExists), errors.Is(kind, config.ErrConflict):
		return http.StatusBadRequest
	}
	return http.StatusBadRequest
}

func message(c echo.Context, status int, msg string) error {
	return writeJSON(c, status, map[string]any{"message": msg})
}

// writeJSON renders v as Flask's jsonify does: compact, keys sorted,
// non-ASCII escaped, no HTML escaping, trailing newline.
func writeJSON(c echo.Context, status int, v any) error {
	b, err := encodeJSON(v)
	if err != nil {
		return err
	}
	return c.Blob(status, echo.MIMEApplicationJSON, b)
}

// encodeJSON sorts keys at every level, including those of structs and of
// types with their own MarshalJSON, by decoding the first encoding into
// generic maps and encoding again.
func encodeJSON(v any) ([]byte, error) {
	first, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("re-decode response: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return asciiEscape(buf.Bytes()), nil
}

// asciiEscape turns every non-ASCII rune into \uXXXX (surrogate pairs above
// the BMP), as Python's json.dumps does by default. Non-ASCII bytes only
// occur inside strings, so escaping them blindly is safe.
func asciiEscape(b []byte) []byte {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r < utf8.RuneSelf {
			out = append(out, byte(r))
			continue
		}
		if r > 0xFFFF {
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
