package commands

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestExpandAlias(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"/usr/bin/rbd-target-api"}, []string{"ceph-iscsi", "api"}},
		{[]string{"rbd-target-gw", "--config", "x"}, []string{"ceph-iscsi", "gw", "--config", "x"}},
		{[]string{"/sbin/gwcli", "ls"}, []string{"ceph-iscsi", "cli", "ls"}},
		{[]string{"/usr/bin/ceph-iscsi", "restore"}, []string{"/usr/bin/ceph-iscsi", "restore"}},
		{[]string{"gwcli-not"}, []string{"gwcli-not"}},
		{nil, []string{"ceph-iscsi"}},
	}
	for _, tt := range tests {
		if got := expandAlias(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("expandAlias(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{args: []string{"ceph-iscsi", "version"}, code: 0, stdout: "ceph-iscsi dev\n"},
		{args: []string{"ceph-iscsi", "bogus"}, code: exitUsage, stderrPart: `unknown command "bogus"`},
		{args: []string{"ceph-iscsi", "version", "--no-such-flag"}, code: exitUsage, stderrPart: "flag provided but not defined"},
		{args: []string{"gwcli", "--help"}, code: 0},
		{args: []string{"rbd-target-gw", "--help"}, code: 0},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := Run(tt.args, &stdout, &stderr)
		if code != tt.code {
			t.Errorf("Run(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
		}
		if tt.stdout != "" && stdout.String() != tt.stdout {
			t.Errorf("Run(%q) stdout = %q, want %q", tt.args, stdout.String(), tt.stdout)
		}
		if !strings.Contains(stderr.String(), tt.stderrPart) {
			t.Errorf("Run(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.stderrPart)
		}
	}
}

// Every subcommand takes --config, so tests and co-located daemons each use their own.
func TestEverySubcommandHasHelpAndConfig(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, cmd := range app.Commands {
		if cmd.Hidden {
			continue // build tooling, not an operator's command
		}
		var stdout bytes.Buffer
		if code := Run([]string{"ceph-iscsi", cmd.Name, "--help"}, &stdout, &bytes.Buffer{}); code != 0 {
			t.Errorf("%s --help exited %d", cmd.Name, code)
		}
		if !strings.Contains(stdout.String(), "--config") {
			t.Errorf("%s --help does not offer --config:\n%s", cmd.Name, stdout.String())
		}
	}
}
