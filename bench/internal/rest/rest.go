// Package rest is what the bench tools (apiload, apibuild) share to drive a
// running rbd-target-api, ours or upstream's, through its public REST API
// only: form-encoded requests with basic auth. It must not import the
// project's own packages: the tools measure the API from outside.
package rest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Client sends requests to one API endpoint.
type Client struct {
	Base, User, Pass string
	HTTP             *http.Client
}

// Do sends one request (form as the body when not nil) and returns the
// status and the whole body.
func (c *Client) Do(ctx context.Context, method, path string, form url.Values) (int, []byte, error) {
	st, _, b, err := c.Send(ctx, method, path, form)
	return st, b, err
}

// Send is Do that also returns the response's headers.
func (c *Client) Send(ctx context.Context, method, path string, form url.Values) (int, http.Header, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(c.User, c.Pass)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// Must runs a setup request; anything but 200 stops the tool, since what
// it would measure next is not what it set out to.
func (c *Client) Must(ctx context.Context, method, path string, form url.Values) {
	st, b, err := c.Do(ctx, method, path, form)
	if err != nil || st != http.StatusOK {
		Fatalf("%s %s%s: %d %s %v", method, c.Base, path, st, strings.TrimSpace(string(b)), err)
	}
}

// Fatalf prints the message prefixed with the tool's name and exits 1.
func Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, filepath.Base(os.Args[0])+": "+format+"\n", args...)
	os.Exit(1)
}
