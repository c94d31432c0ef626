package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
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

const msgClientGone = "request cancelled: the client closed its connection before the answer"

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
		body, err := formBody(r)
		if err != nil {
			return form{}, err
		}
		f.body = body
	}
	c.Set(formKey, f)
	return f, nil
}

// formBody parses the body as Flask fills request.form: URL-encoded or
// multipart form fields (multipart files are not form fields). A body that
// cannot be read or parsed, or that is not a form at all, is refused, never
// taken for an empty form: absent fields mean "clear" on some routes
// (clientauth), so a garbled or JSON request must not read as one.
func formBody(r *http.Request) (url.Values, error) {
	header := r.Header.Get("Content-Type")
	ct, ctParams, ctErr := mime.ParseMediaType(header)
	if header != "" && ctErr != nil {
		return nil, httpErr(http.StatusBadRequest, "malformed Content-Type header: %v", ctErr)
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		b, err := readBody(io.LimitReader(r.Body, maxFormBytes+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxFormBytes {
			return nil, errBodyTooLarge
		}
		v, err := url.ParseQuery(string(b))
		if err != nil {
			// The offending escape is not quoted: it may be part of a
			// password.
			return nil, httpErr(http.StatusBadRequest, "malformed form body: invalid URL encoding (application/x-www-form-urlencoded expected)")
		}
		return v, nil
	case "multipart/form-data":
		return multipartFields(r.Body, ctParams["boundary"])
	}
	if r.ContentLength == 0 {
		return url.Values{}, nil
	}
	// A body of unknown length may still be empty (a chunked request
	// with no data): only content makes it a mistake.
	b, err := readBody(io.LimitReader(r.Body, 1))
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		if ct == "" {
			ct = "none"
		}
		return nil, httpErr(http.StatusUnsupportedMediaType,
			"unsupported Content-Type %s: send the form as application/x-www-form-urlencoded or multipart/form-data", ct)
	}
	return url.Values{}, nil
}

var errBodyTooLarge = httpErr(http.StatusRequestEntityTooLarge, "request body too large (at most %d bytes)", maxFormBytes)

// readBody reads all of rd, turning a transport failure into the client
// error it is: a body shorter than its Content-Length, a malformed chunk,
// a connection closed or stalled mid-body.
func readBody(rd io.Reader) ([]byte, error) {
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, bodyReadError(err)
	}
	return b, nil
}

func bodyReadError(err error) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return httpErr(http.StatusRequestTimeout, "request body not received in time")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return httpErr(http.StatusBadRequest, "incomplete request body: the connection ended before Content-Length bytes (or the last chunk) arrived")
	}
	// Anything else the server's body reader reports is the client's
	// framing: a bad chunk length, a malformed chunk or trailer.
	return httpErr(http.StatusBadRequest, "malformed request body: %v", err)
}

// multipartFields reads the form fields of a multipart/form-data body,
// bounded like a URL-encoded one.
func multipartFields(body io.Reader, boundary string) (url.Values, error) {
	const bad = "malformed multipart form body"
	if boundary == "" {
		return nil, httpErr(http.StatusBadRequest, "%s: no boundary in Content-Type", bad)
	}
	lr := &io.LimitedReader{R: body, N: maxFormBytes + 1}
	mr := multipart.NewReader(lr, boundary)
	out := url.Values{}
	for {
		part, err := mr.NextPart()
		// Only a bare EOF is the closing boundary: NextPart wraps the EOF
		// of a body that never had one.
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, multipartError(lr, err, bad)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, multipartError(lr, err, bad)
		}
		name := part.FormName()
		if name == "" {
			return nil, httpErr(http.StatusBadRequest, "%s: a part has no form-data name", bad)
		}
		if part.FileName() != "" {
			continue // request.files, not request.form
		}
		if !utf8.Valid(data) {
			return nil, httpErr(http.StatusBadRequest, "%s: field %q is not UTF-8", bad, name)
		}
		out.Add(name, string(data))
	}
	if lr.N <= 0 {
		return nil, errBodyTooLarge
	}
	return out, nil
}

func multipartError(lr *io.LimitedReader, err error, bad string) error {
	if lr.N <= 0 {
		return errBodyTooLarge
	}
	var he *httpError
	if e := bodyReadError(err); errors.As(e, &he) && he.Status != http.StatusBadRequest {
		return e
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return httpErr(http.StatusBadRequest, "%s: it ends before its closing boundary", bad)
	}
	return httpErr(http.StatusBadRequest, "%s: %v", bad, err)
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
	if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
		// The client closed (or half-closed) its connection: its own doing,
		// not the server's, even if it never reads this answer.
		status, msg = http.StatusBadRequest, msgClientGone
	}
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
