package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// rawGetter sends one GET over an HTTP/1.1 connection of its own, request
// after request, as a load generator does (wrk): no Transport goroutines
// handing each request over, a fixed request, the body read through one
// buffer and dropped. In the TCG guest the client shares two vCPUs with the
// daemon it measures, so every millisecond it spends is taken from the
// daemon; net/http's client spent about as much CPU per GET as the daemon.
// Ours and upstream's daemon get the same requests: a response that
// closes the connection (HTTP/1.0, "Connection: close") makes the next
// request dial again, and a kept-alive connection the server dropped
// meanwhile is retried once on a fresh one.
type rawGetter struct {
	addr string
	req  []byte
	conn net.Conn
	br   *bufio.Reader
}

// newRawGetter prepares GET path on base (http only) with basic auth.
func newRawGetter(base, user, pass, path string) (*rawGetter, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	req := "GET " + u.Path + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: apiload\r\n" +
		"Authorization: Basic " + auth + "\r\nAccept: */*\r\n\r\n"
	return &rawGetter{addr: addr, req: []byte(req)}, nil
}

// get sends the request and reads the whole answer: its status, its
// Server-Timing header, its body's size.
func (g *rawGetter) get() (int, string, int64, error) {
	reused := g.conn != nil
	st, timing, n, err := g.once()
	if err != nil && reused {
		st, timing, n, err = g.once()
	}
	return st, timing, n, err
}

func (g *rawGetter) once() (int, string, int64, error) {
	if g.conn == nil {
		c, err := net.DialTimeout("tcp", g.addr, 30*time.Second)
		if err != nil {
			return 0, "", 0, err
		}
		g.conn, g.br = c, bufio.NewReaderSize(c, 64<<10)
	}
	fail := func(err error) (int, string, int64, error) {
		g.close()
		return 0, "", 0, err
	}
	if err := g.conn.SetDeadline(time.Now().Add(10 * time.Minute)); err != nil {
		return fail(err)
	}
	if _, err := g.conn.Write(g.req); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(g.br, nil)
	if err != nil {
		return fail(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fail(errors.New("short body"))
	}
	if resp.Close {
		g.close()
	}
	return resp.StatusCode, resp.Header.Get("Server-Timing"), n, nil
}

func (g *rawGetter) close() {
	if g.conn != nil {
		g.conn.Close()
		g.conn = nil
	}
}
