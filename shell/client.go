package shell

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls an rbd-target-api (ours or upstream's) over upstream's routes.
type Client struct {
	Scheme   string // http or https
	Port     int
	User     string
	Password string
	HTTP     *http.Client
	// Peers maps a host name (a gateway name, or "localhost" for the local API) to the base
	// URL (scheme://host:port) that reaches it instead of <Scheme>://<name>:<Port>, for
	// several gateways on one host (tests, the dev setup) as the api daemon's --peer does.
	Peers map[string]string
}

// NewClient returns a client for the API on port, https when secure; like upstream's gwcli it
// does not verify the certificate, since gateways use self-signed ones.
func NewClient(secure bool, port int, user, password string, timeout time.Duration) *Client {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // upstream's behaviour
	return &Client{Scheme: scheme, Port: port, User: user, Password: password,
		HTTP: &http.Client{Transport: tr, Timeout: timeout}}
}

// APIError is an answer other than 2xx; Message is the API's own message.
type APIError struct {
	Method, URL string
	Status      int
	Message     string
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("%s %s: %s", e.Method, e.URL, http.StatusText(e.Status))
}

// URL returns the API URL of route on host ("localhost" for the local API); every path
// segment is escaped.
func (c *Client) URL(host string, route ...string) string {
	segs := make([]string, len(route))
	for i, s := range route {
		segs[i] = url.PathEscape(s)
	}
	u := &url.URL{Scheme: c.Scheme, Host: net.JoinHostPort(host, strconv.Itoa(c.Port)),
		Path: "/api/" + strings.Join(route, "/"), RawPath: "/api/" + strings.Join(segs, "/")}
	if base, ok := c.Peers[host]; ok {
		if b, err := url.Parse(base); err == nil {
			u.Scheme, u.Host = b.Scheme, b.Host
		}
	}
	return u.String()
}

// Do sends a request with the form as a urlencoded body (query string for GET and DELETE
// too, as upstream's requests calls do for data=) and returns the decoded JSON answer in out
// (when non-nil). A non-2xx answer is an *APIError carrying the API's message.
func (c *Client) Do(ctx context.Context, method, rawURL string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, rawURL, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct {
			Message json.RawMessage `json:"message"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &m) == nil && len(m.Message) > 0 {
			var s string
			if json.Unmarshal(m.Message, &s) == nil {
				msg = s
			} else {
				msg = string(m.Message)
			}
		}
		return &APIError{Method: method, URL: rawURL, Status: resp.StatusCode, Message: msg}
	}
	if out != nil {
		if b, ok := out.(*[]byte); ok {
			*b = raw
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, rawURL, err)
		}
	}
	return nil
}
