package settings

import (
	"os"
	"reflect"
	"regexp"
	"testing"
)

// The package ships dist/deb/iscsi-gateway.cfg as /etc/ceph/iscsi-gateway.cfg. It must
// parse, and every "# key = value" line in it must show the real default: uncommenting
// them all changes nothing but the example list.
func TestShippedSample(t *testing.T) {
	data, err := os.ReadFile("../dist/deb/iscsi-gateway.cfg")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(DefaultPath, data)
	if err != nil {
		t.Fatalf("the shipped sample does not parse: %v", err)
	}
	// The sample's only active change from the defaults, as upstream's sample.
	want, err := Parse(DefaultPath, []byte("[config]\napi_secure = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sample settings = %+v, want %+v", got, want)
	}

	commented := regexp.MustCompile(`(?m)^# ([a-z0-9_]+) =(.*)$`)
	documented := map[string]bool{"cluster_name": true, "pool": true, "api_secure": true}
	for _, m := range commented.FindAllSubmatch(data, -1) {
		documented[string(m[1])] = true
	}
	// Legacy or developer-only settings the sample leaves out on purpose.
	omitted := map[string]bool{"ceph_user": true, "debug": true}
	for i := range table {
		if name := table[i].name; !documented[name] && !omitted[name] {
			t.Errorf("the sample does not document %s", name)
		}
	}
	uncommented := commented.ReplaceAll(data, []byte("$1 =$2"))
	all, err := Parse(DefaultPath, uncommented)
	if err != nil {
		t.Fatalf("the sample with its defaults uncommented does not parse: %v", err)
	}
	want.TrustedIPList = []string{"192.168.0.10", "192.168.0.11"}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("the commented defaults of the sample are not the defaults:\n got %+v\nwant %+v", all, want)
	}
}
