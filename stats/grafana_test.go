package stats

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardPath = "../dist/grafana/ceph-iscsi-gateway.json"

var (
	metricRef = regexp.MustCompile(`\b(ceph_iscsi_[a-z_]+|go_[a-z_]+|process_[a-z_]+)\b`)
	byClause  = regexp.MustCompile(`\bby \(([^)]*)\)`)
	selector  = regexp.MustCompile(`\{([^}]*)\}`)
	labelName = regexp.MustCompile(`([a-z_]+)\s*=~?`)
)

// TestGrafanaDashboard: the shipped dashboard parses, every metric it
// queries is one the exporter serves, with the labels the query groups or
// filters by, and every ceph_iscsi family of the collector is on it.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("uid %q title %q, %d panels", dash.UID, dash.Title, len(dash.Panels))
	}

	// what the exporter serves on a gateway with a target, LUNs and clients
	f := gateway(t, 2, 1, 2)
	login(t, f, 0)
	mfs, err := NewRegistry(NewCollector(f, testGW, "v1", nil)).Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{} // family -> label names
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels[mf.GetName()], lp.GetName()) {
					labels[mf.GetName()] = append(labels[mf.GetName()], lp.GetName())
				}
			}
		}
		if _, ok := labels[mf.GetName()]; !ok {
			labels[mf.GetName()] = nil
		}
	}
	// labels Prometheus adds to every series
	target := []string{"job", "instance"}

	var exprs []string
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Name != "datasource" {
			exprs = append(exprs, v.Query)
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricRef.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no metric of the exporter", e)
		}
		var have []string
		for _, n := range names {
			l, ok := labels[n]
			if !ok {
				t.Errorf("query %q: %s is not served", e, n)
			}
			used[n] = true
			have = append(have, l...)
		}
		have = append(have, target...)
		var want []string
		for _, m := range byClause.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				want = append(want, strings.TrimSpace(l))
			}
		}
		for _, m := range selector.FindAllStringSubmatch(e, -1) {
			for _, l := range labelName.FindAllStringSubmatch(m[1], -1) {
				want = append(want, l[1])
			}
		}
		if strings.Contains(e, "label_values(") {
			want = append(want, strings.TrimSuffix(strings.TrimSpace(e[strings.LastIndex(e, ",")+1:]), ")"))
		}
		for _, l := range want {
			if !slices.Contains(have, l) {
				t.Errorf("query %q uses label %q, which its metrics lack", e, l)
			}
		}
	}
	for name := range labels {
		if strings.HasPrefix(name, "ceph_iscsi_") && !used[name] {
			t.Errorf("%s is not on the dashboard", name)
		}
	}
}
