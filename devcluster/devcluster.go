// Package devcluster starts and stops the project's real single-node Ceph cluster
// (dist/dev/ceph-cluster.sh: 1 mon + 1 mgr + 1 OSD on 127.0.0.1, cephx on, pool rbd) for tests
// and development. It owns only the cluster's life cycle; it must not be imported by
// anything the product ships.
package devcluster

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Cluster is a running dev cluster.
type Cluster struct {
	Dir     string
	Conf    string // ceph.conf path, what CEPH_CONF names
	Keyring string
	// owned is false for a cluster named by CEPH_CONF: someone else stops it.
	owned bool
}

// Script is the path of the project's cluster script.
func Script() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("devcluster: cannot locate the source tree")
	}
	p := filepath.Join(filepath.Dir(file), "..", "dist", "dev", "ceph-cluster.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("devcluster: %w", err)
	}
	return p, nil
}

// Start brings a new cluster up in dir on free loopback ports and returns once the
// pool answers.
func Start(dir string) (*Cluster, error) {
	script, err := Script()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		mon, osd := freePorts()
		cmd := exec.Command(script, "up", dir)
		cmd.Env = append(os.Environ(),
			"CEPH_DEV_MON_PORT="+strconv.Itoa(mon),
			fmt.Sprintf("CEPH_DEV_OSD_PORTS=%d-%d", osd, osd+99))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			lastErr = fmt.Errorf("devcluster: %s up %s: %w\n%s", script, dir, err, tail(stderr.String(), 20))
			if strings.Contains(stderr.String(), "already in use") {
				_ = os.RemoveAll(dir) // the conf names the taken ports: start over
				continue
			}
			_ = stop(script, dir)
			return nil, lastErr
		}
		c := &Cluster{Dir: dir, owned: true}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "CEPH_CONF="); ok {
				c.Conf = v
			} else if v, ok := strings.CutPrefix(line, "CEPH_KEYRING="); ok {
				c.Keyring = v
			}
		}
		if c.Conf == "" {
			return nil, fmt.Errorf("devcluster: %s printed no CEPH_CONF", script)
		}
		return c, nil
	}
	return nil, lastErr
}

// FromEnv returns the cluster named by CEPH_CONF, or nil when it is unset.
func FromEnv() *Cluster {
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		return nil
	}
	dir := filepath.Dir(conf)
	keyring := os.Getenv("CEPH_KEYRING")
	if keyring == "" {
		keyring = filepath.Join(dir, "ceph.client.admin.keyring")
	}
	return &Cluster{Dir: dir, Conf: conf, Keyring: keyring}
}

// Stop stops a cluster this process started, and deletes its directory.
func (c *Cluster) Stop() error {
	if !c.owned {
		return nil
	}
	script, err := Script()
	if err != nil {
		return err
	}
	if err := stop(script, c.Dir); err != nil {
		return err
	}
	return os.RemoveAll(c.Dir)
}

// Env is the environment a ceph/rados/rbd CLI needs to talk to the cluster.
func (c *Cluster) Env() []string {
	return append(os.Environ(), "CEPH_CONF="+c.Conf, "CEPH_KEYRING="+c.Keyring)
}

// Ceph runs the ceph CLI against the cluster and returns its stdout.
func (c *Cluster) Ceph(args ...string) (string, error) {
	return c.run("ceph", args...)
}

// Rados runs the rados CLI against the cluster and returns its stdout.
func (c *Cluster) Rados(args ...string) (string, error) {
	return c.run("rados", args...)
}

func (c *Cluster) run(tool string, args ...string) (string, error) {
	full := append([]string{"-c", c.Conf, "-k", c.Keyring}, args...)
	cmd := exec.Command(tool, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func stop(script, dir string) error {
	out, err := exec.Command(script, "down", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("devcluster: %s down %s: %w: %s", script, dir, err, out)
	}
	return nil
}

// freePorts picks a mon port (it and the next one free) and the start of a free
// 100-port OSD range. Another process may take them before the cluster binds; the
// script then refuses and Start tries again. The ports the tests pick: mons in
// 20000-31999, below Linux's default ephemeral range (32768-60999), where an outgoing
// connection may hold the exact port a mon needs; OSDs in 42000-61999 (an OSD binds
// the first free port of its range); test API daemons in 10000-19999
// (commands/api_test.go); dist/dev/with-cluster.sh and vm/test.sh do the same.
func freePorts() (mon, osd int) {
	for {
		mon = 20000 + 2*rand.IntN(6000)
		if portFree(mon) && portFree(mon+1) {
			break
		}
	}
	for {
		osd = 42000 + 100*rand.IntN(200)
		if portFree(osd) && portFree(osd+50) {
			return mon, osd
		}
	}
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Available reports whether the Ceph daemons the script needs are installed.
func Available() error {
	for _, bin := range []string{"ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "ceph-authtool", "monmaptool", "rados", "rbd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not installed (run `make deps`)", bin)
		}
	}
	return nil
}
