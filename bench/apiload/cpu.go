package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// proc is a process whose CPU a GET run reports per request: in a TCG
// guest the daemon, Ceph's daemons and apiload itself share two vCPUs, so
// CPU per request is latency, whoever spends it.
type proc struct{ name, pid string }

// parseProcs reads -cpu-pids ("name=pid,..."); apiload itself is always
// first.
func parseProcs(s string) ([]proc, error) {
	out := []proc{{"apiload", "self"}}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, e := range strings.Split(s, ",") {
		n, p, ok := strings.Cut(strings.TrimSpace(e), "=")
		if _, err := strconv.Atoi(p); !ok || n == "" || err != nil {
			return nil, fmt.Errorf("-cpu-pids: %q is not NAME=PID", e)
		}
		out = append(out, proc{n, p})
	}
	return out, nil
}

// cpuTicks is the user+system CPU of pid so far, in clock ticks (USER_HZ,
// 100 on Linux), or -1 when it cannot be read (the process is gone).
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	// the command name may hold spaces and parentheses: fields count from
	// the last ')', where field 3 (state) starts
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return u + k
}

func sampleCPU(ps []proc) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = cpuTicks(p.pid)
	}
	return out
}
