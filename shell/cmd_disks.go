package shell

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

// The commands of /disks and /disks/<pool>/<image> (upstream's storage.py Disks and Disk).

func init() {
	imageID := Param{Name: "image_id", Required: true, Complete: completeDisks}
	register(&Command{Kind: KindDisks, Name: "create",
		Params: []Param{{Name: "pool", Complete: completePools}, {Name: "image"}, {Name: "size"},
			{Name: "backstore", Complete: fixed("user:rbd")}, {Name: "wwn"}, {Name: "count", Default: "1"}},
		Summary: "Create a RBD image and assign to the gateway(s).",
		Help: `Create a RBD image and assign to the gateway(s).

The create command supports two request formats;

Long format  : create pool=<name> image=<name> size=<size>
Short format : create pool/image <size>

e.g.
create pool=rbd image=testimage size=100g
create rbd/testimage 100g

The syntax of each parameter is as follows;
pool  : Pool and image name may contain a-z, A-Z, 0-9, '_', or '-'
image   characters.
size  : integer, suffixed by the allocation unit - either m/M, g/G or
        t/T representing the MB/GB/TB [1]
backstore  : lio backstore
wwn   : unit serial number
count : integer (default is 1)[2]. If the request provides a count=<n>
        parameter the image name will be used as a prefix, and the count
        used as a suffix to create multiple images from the same request.
        e.g.
        create rbd/test 1g count=5
        -> create 5 images called test1..test5 each of 1GB in size
           from the rbd pool

Notes.
1) size does not support decimal representations
2) Using a count to create multiple images will lock the CLI until all
   images have been created`,
		Run: runDisksCreate})
	register(&Command{Kind: KindDisks, Name: "attach",
		Params: []Param{{Name: "pool", Complete: completePools}, {Name: "image"},
			{Name: "backstore", Complete: fixed("user:rbd")}, {Name: "wwn"}},
		Summary: "Assign a previously created RBD image to the gateway(s).",
		Help: `Assign a previously created RBD image to the gateway(s)

The attach command supports two request formats;

Long format  : attach pool=<name> image=<name>
Short format : attach pool/image

e.g.
attach pool=rbd image=testimage
attach rbd/testimage

The syntax of each parameter is as follows;
pool  : Pool and image name may contain a-z, A-Z, 0-9, '_', or '-'
image   characters.`,
		Run: runDisksAttach})
	register(&Command{Kind: KindDisks, Name: "resize",
		Params:  []Param{imageID, {Name: "size", Required: true}},
		Summary: "Increase the size of an existing rbd image.",
		Help: `The resize command allows you to increase the size of an
existing rbd image. Attempting to decrease the size of an
rbd will be ignored.

image_id: disk name (pool/image format)
size: new size including unit suffix e.g. 300G`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			id := a.Get("image_id")
			if s.Config.Disks[id] == nil {
				return refuse("the disk '%s' does not exist in this configuration", id)
			}
			return resizeDisk(ctx, e, id, a.Get("size"))
		}})
	register(&Command{Kind: KindDisks, Name: "reconfigure",
		Params:   []Param{imageID, {Name: "attribute", Required: true, Complete: completeDiskControls}, {Name: "value", Required: true}},
		Variadic: true,
		Summary:  "Tune a disk's LUN attributes.",
		Help: `The reconfigure command allows you to tune various lun attributes.
An empty value for an attribute resets the lun attribute to its
default.

image_id  : disk name (pool/image format)
attribute : attribute to reconfigure. supported attributes:
value     : value of the attribute to reconfigure

e.g.
set max_data_area_mb
  - reconfigure image_id=rbd/disk_1 attribute=max_data_area_mb value=128
reset max_data_area_mb to default
  - reconfigure image_id=rbd/disk_1 attribute=max_data_area_mb value=`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			id := a.Get("image_id")
			if s.Config.Disks[id] == nil {
				return refuse("the disk '%s' does not exist in this configuration", id)
			}
			return reconfigureDisk(ctx, e, s, id, a.Get("attribute"), a.Get("value"))
		}})
	register(&Command{Kind: KindDisks, Name: "delete", Params: []Param{imageID},
		Summary: "Delete a given rbd image from the configuration and ceph.",
		Help: `Delete a given rbd image from the configuration and ceph. This is a
destructive action that could lead to data loss, so please ensure
the rbd image name is correct!

> delete <disk_name>
e.g.
> delete rbd/disk_1

"disk_name" refers to the name of the disk as shown in the UI, for
example rbd/disk_1.

Also note that the delete process is a synchronous task, so the larger
the rbd image is, the longer the delete will take to run.`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			return deleteDisk(ctx, e, a.Get("image_id"), false)
		}})
	register(&Command{Kind: KindDisks, Name: "detach", Params: []Param{imageID},
		Summary: "Delete a given rbd image from the configuration but not from ceph.",
		Help: `Delete a given rbd image from the configuration but not from ceph.

> detach <disk_name>
e.g.
> detach rbd/disk_1

"disk_name" refers to the name of the disk as shown in the UI, for
example rbd/disk_1.`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			return deleteDisk(ctx, e, a.Get("image_id"), true)
		}})
	register(&Command{Kind: KindDisks, Name: "info", Params: []Param{imageID},
		Summary: "Provide disk configuration information.",
		Help:    "Provide disk configuration information (rbd and LIO details are provided)",
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			id := a.Get("image_id")
			if s.Config.Disks[id] == nil {
				return refuse("disk name provided does not exist")
			}
			return diskInfo(ctx, e, s, id)
		}})

	register(&Command{Kind: KindDisk, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.",
		Run: func(ctx context.Context, e *Env, n *Node, _ Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			return diskInfo(ctx, e, s, n.Disk())
		}})
	register(&Command{Kind: KindDisk, Name: "resize", Params: []Param{{Name: "size", Required: true}},
		Summary: "Increase the size of the rbd image.",
		Help: `The resize command allows you to increase the size of an
existing rbd image. Attempting to decrease the size of an
rbd will be ignored.

size: new size including unit suffix e.g. 300G`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			return resizeDisk(ctx, e, n.Disk(), a.Get("size"))
		}})
	register(&Command{Kind: KindDisk, Name: "reconfigure",
		Params:   []Param{{Name: "attribute", Required: true, Complete: completeDiskControls}, {Name: "value", Required: true}},
		Variadic: true,
		Summary:  "Tune the disk's LUN attributes.",
		Help: `The reconfigure command allows you to tune various lun attributes.
An empty value for an attribute resets the lun attribute to its
default.

attribute : attribute to reconfigure. supported attributes:
value     : value of the attribute to reconfigure

See the create command help for a list of attributes that can be
reconfigured.

e.g.
set max_data_area_mb
  - reconfigure attribute=max_data_area_mb value=128
reset max_data_area_mb to default
  - reconfigure attribute=max_data_area_mb value=`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			return reconfigureDisk(ctx, e, s, n.Disk(), a.Get("attribute"), a.Get("value"))
		}})
	register(&Command{Kind: KindDisk, Name: "snapshot",
		Params: []Param{{Name: "action", Required: true, Complete: fixed("create", "delete", "rollback")},
			{Name: "name", Required: true, Complete: completeSnapshots}},
		Summary: "Create, delete or rollback a snapshot of the rbd image.",
		Help: `The snapshot command allows you create, delete, and rollback
snapshots on an existing rbd image.

e.g.
snapshot create snap1
snapshot delete snap1
snapshot rollback snap1

action: create, delete, or rollback
name: snapshot name`,
		Run: runSnapshot})
}

var completeDiskControls = fixed(settings.DiskControlNames()...)

// splitShort takes the short form's "pool/image" apart.
func splitShort(word string) (pool, image string) {
	pool, image, _ = strings.Cut(word, "/")
	return pool, image
}

func runDisksCreate(ctx context.Context, e *Env, _ *Node, a Args) error {
	pool, image, size, count := a.Get("pool"), a.Get("image"), a.Get("size"), a.Get("count")
	if strings.Contains(pool, "/") {
		// short form: create pool/image <size> [<count>]
		if image != "" {
			if size != "" {
				if !isDigits(size) {
					return refuse("Invalid count provided (%s ?)", size)
				}
				count = size
			}
			size = image
		}
		pool, image = splitShort(pool)
	} else if pool == "" || image == "" {
		return refuse("Invalid create: pool and image parameters are needed")
	}
	if size != "" && !validSize(size) {
		return refuse("Invalid size requested. Must be an integer, suffixed by M, G or T. See help for more info")
	}
	if count != "" && !isDigits(count) {
		return refuse("invalid count format, must be an integer")
	}
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	return createDisk(ctx, e, s, diskRequest{pool: pool, image: image, size: size, count: count, create: true,
		backstore: optional(a, "backstore"), wwn: optional(a, "wwn")})
}

func runDisksAttach(ctx context.Context, e *Env, _ *Node, a Args) error {
	pool, image := a.Get("pool"), a.Get("image")
	if strings.Contains(pool, "/") {
		pool, image = splitShort(pool)
	} else if pool == "" || image == "" {
		return refuse("Invalid create: pool and image parameters are needed")
	}
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	return createDisk(ctx, e, s, diskRequest{pool: pool, image: image, count: "1",
		backstore: optional(a, "backstore"), wwn: optional(a, "wwn")})
}

func optional(a Args, name string) *string {
	if !a.Given[name] {
		return nil
	}
	v := a.Get(name)
	return &v
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validSize is upstream's valid_size: digits then M, G or T.
func validSize(s string) bool {
	_, err := rbd.ParseSize(s)
	return err == nil
}

type diskRequest struct {
	pool, image, size, count string
	create                   bool
	backstore, wwn           *string
}

// createDisk is upstream's Disks.create_disk: the pool check, PUT /api/disk, then the new
// disks read back. It prints "ok" once the API has created them.
func createDisk(ctx context.Context, e *Env, s *Snapshot, r diskRequest) error {
	if p, found := s.Pools[r.pool]; !found || !p.Replicated {
		return refuse("Invalid pool (%s). Must already exist and be replicated", r.pool)
	}
	form := url.Values{"pool": {r.pool}, "owner": {e.LocalName}, "count": {r.count}, "mode": {"create"},
		"create_image": {"false"}}
	if r.create {
		form.Set("create_image", "true")
	}
	if r.backstore != nil {
		form.Set("backstore", *r.backstore)
	}
	if r.wwn != nil {
		form.Set("wwn", *r.wwn)
	}
	if r.size != "" {
		form.Set("size", strings.ToUpper(r.size))
	}
	if err := put(ctx, e, local(e, "disk", r.pool, r.image), form); err != nil {
		return fail("Failed : ", err)
	}
	if err := ok(e); err != nil {
		return err
	}
	e.Refresh()
	n := 1
	fmt.Sscan(r.count, &n)
	for i := 1; i <= n; i++ {
		image := r.image
		if n > 1 {
			image = fmt.Sprintf("%s%d", r.image, i)
		}
		if err := e.API.Do(ctx, "GET", local(e, "disk", r.pool, image), nil, nil); err != nil {
			return withMsg(err, "Unable to retrieve disk details for '%s/%s' from the API: %s", r.pool, image, apiMessage(err))
		}
	}
	return nil
}

func resizeDisk(ctx context.Context, e *Env, id, size string) error {
	size = strings.ToUpper(size)
	if !validSize(size) {
		return refuse("Size is invalid")
	}
	pool, _ := splitShort(id)
	form := url.Values{"pool": {pool}, "size": {size}, "owner": {e.LocalName}, "mode": {"resize"}}
	if err := put(ctx, e, local(e, diskRoute(id)...), form); err != nil {
		return fail("Failed to resize : ", err)
	}
	e.Refresh()
	return ok(e)
}

func reconfigureDisk(ctx context.Context, e *Env, s *Snapshot, id, attribute, value string) error {
	d := s.Config.Disks[id]
	if d == nil {
		return refuse("the disk '%s' does not exist in this configuration", id)
	}
	if d.Owner == nil || *d.Owner == "" {
		return refuse("Cannot reconfigure until disk assigned to target")
	}
	pool, _ := splitShort(id)
	form := url.Values{"pool": {pool}, "owner": {e.LocalName}, "controls": {controlsJSON(attribute, value)},
		"mode": {"reconfigure"}}
	if err := put(ctx, e, local(e, diskRoute(id)...), form); err != nil {
		return fail("Failed to reconfigure : ", err)
	}
	e.Refresh()
	return ok(e)
}

// deleteDisk goes to this host's API by its name, as upstream does.
func deleteDisk(ctx context.Context, e *Env, id string, preserve bool) error {
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	if s.Config.Disks[id] == nil {
		return refuse("Disk '%s' is not defined to the configuration", id)
	}
	form := url.Values{"purge_host": {e.LocalName}, "preserve_image": {"false"}}
	if preserve {
		form.Set("preserve_image", "true")
	}
	if err := del(ctx, e, e.API.URL(e.LocalName, diskRoute(id)...), form); err != nil {
		return fail("", err)
	}
	e.Refresh()
	return ok(e)
}

// diskStatus is the status block of GET /api/disk/<id>.
type diskStatus struct {
	Status *struct {
		State     string `json:"state"`
		LockOwner string `json:"lock_owner"`
	} `json:"status"`
}

func diskInfo(ctx context.Context, e *Env, s *Snapshot, id string) error {
	d := s.Config.Disks[id]
	if d == nil {
		return refuse("disk name provided does not exist")
	}
	state, lockOwner := "Unknown", "Unknown"
	var st diskStatus
	if err := e.API.Do(ctx, "GET", local(e, diskRoute(id)...), nil, &st); err == nil && st.Status != nil {
		if st.Status.State != "" {
			state = st.Status.State
		}
		if st.Status.LockOwner != "" {
			lockOwner = st.Status.LockOwner
		}
	}
	img, exists := s.Images[id]
	sizeH := ""
	if exists {
		sizeH = humanSize(img.Size)
	}
	snaps := make([]string, 0, len(img.Snapshots))
	for i, name := range img.Snapshots {
		var size uint64
		if i < len(img.SnapSizes) {
			size = img.SnapSizes[i]
		}
		snaps = append(snaps, fmt.Sprintf("%s (%s)", name, humanSize(size)))
	}
	owner := ""
	if d.Owner != nil {
		owner = *d.Owner
	}
	cluster := s.Cluster.Name
	if cluster == "" && e.Settings != nil {
		cluster = e.Settings.ClusterName
	}
	return showInfo(e, []infoField{
		{"image", d.Image}, {"ceph_cluster", cluster}, {"pool", d.Pool}, {"wwn", d.WWN},
		{"size_h", sizeH}, {"feature_list", featureList(img.Features)}, {"snapshots", snaps},
		{"owner", owner}, {"lock_owner", lockOwner}, {"state", state}, {"backstore", d.Backstore},
		{"backstore_object_name", d.BackstoreObjectName},
		{"control_values", controlDict(e, d.Controls, true)},
	})
}

// rbdFeatures are librbd's feature names in bit order, and the names of the Python rbd
// module's constants that upstream's info prints for them.
var rbdFeatures = [][2]string{
	{"layering", "RBD_FEATURE_LAYERING"}, {"striping", "RBD_FEATURE_STRIPINGV2"},
	{"exclusive-lock", "RBD_FEATURE_EXCLUSIVE_LOCK"}, {"object-map", "RBD_FEATURE_OBJECT_MAP"},
	{"fast-diff", "RBD_FEATURE_FAST_DIFF"}, {"deep-flatten", "RBD_FEATURE_DEEP_FLATTEN"},
	{"journaling", "RBD_FEATURE_JOURNALING"}, {"data-pool", "RBD_FEATURE_DATA_POOL"},
	{"operations", "RBD_FEATURE_OPERATIONS"}, {"migrating", "RBD_FEATURE_MIGRATING"},
	{"non-primary", "RBD_FEATURE_NON_PRIMARY"},
}

// featureList is the feature_list attribute: upstream's constant names in bit order.
func featureList(names []string) []string {
	var out []string
	for _, f := range rbdFeatures {
		if slices.Contains(names, f[0]) || slices.Contains(names, f[1]) {
			out = append(out, f[1])
		}
	}
	return out
}

// snapshotName is upstream's valid_snapshot_name.
var snapshotName = regexp.MustCompile(`^[^/@]+$`)

func runSnapshot(ctx context.Context, e *Env, n *Node, a Args) error {
	action, name := a.Get("action"), a.Get("name")
	if action != "create" && action != "delete" && action != "rollback" {
		return refuse("you can only create, delete, or rollback - %s is invalid ", action)
	}
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	exists := slices.Contains(s.Images[n.Disk()].Snapshots, name)
	if action == "create" {
		if exists {
			return refuse("Snapshot %s already exists", name)
		}
		if !snapshotName.MatchString(name) {
			return refuse("Snapshot %s contains invalid characters", name)
		}
	} else if !exists {
		return refuse("Snapshot %s does not exist", name)
	}
	if action == "rollback" {
		say(e, "Please be patient, rollback might take time")
	}
	u := local(e, "disksnap", n.Pool, n.Image, name)
	if action == "delete" {
		err = del(ctx, e, u, nil)
	} else {
		err = put(ctx, e, u, url.Values{"mode": {action}})
	}
	if err != nil {
		return fail("Failed to "+action+" snapshot: ", err)
	}
	e.Refresh()
	return ok(e)
}

// diskRoute is the route of /api/disk/<pool>/<image>: the id split on its first '/' so
// that each part is one escaped path segment.
func diskRoute(id string) []string {
	pool, image := splitShort(id)
	return []string{"disk", pool, image}
}
