package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/devstatus"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

// supportedBackstores is what PUT /api/disk accepts, as GET /api/settings
// advertises.
var supportedBackstores = []string{rbd.BackstoreUserRBD}

// maxWWNLen is LIO's limit on a unit serial (INQUIRY_VPD_SERIAL_LEN less
// the terminator): a longer one would only fail later, in the kernel.
const maxWWNLen = 253

// maxDiskIDLen bounds "pool/image" of a new disk. The kernel takes a TCMU
// dev_config ("rbd/<pool>/<image>;osd_op_timeout=N", plus ";conf=" and
// ";id=" for a non-default cluster or user) of at most 255 bytes, and the
// storage object's configfs name "<pool>.<image>[.N]" of at most 255: a
// longer name used to pass here and fail in the allocation, as a 500.
const maxDiskIDLen = 192

var errZeroSize = httpErr(http.StatusBadRequest, "Size is invalid (a disk needs a size greater than 0)")

// checkDiskName applies upstream's character rules to a new disk's names,
// and the length LIO can carry.
func checkDiskName(pool, image string) error {
	if err := rbd.ValidatePoolName(pool); err != nil {
		return httpErr(http.StatusBadRequest, "%s", err.Error())
	}
	if err := rbd.ValidateImageName(image); err != nil {
		return httpErr(http.StatusBadRequest, "%s", err.Error())
	}
	if n := len(pool) + 1 + len(image); n > maxDiskIDLen {
		return httpErr(http.StatusBadRequest, "Invalid image name (pool/image is %d characters, at most %d)", n, maxDiskIDLen)
	}
	return nil
}

func diskID(pool, image string) string { return config.DiskID(pool, image) }

func diskNotFound(id string) *httpError {
	return httpErr(http.StatusNotFound, "rbd image %s not found", id)
}

func diskNotDefined(pool, image string) *httpError {
	return httpErr(http.StatusBadRequest, "rbd %s/%s is not defined to the configuration", pool, image)
}

// diskPeers is upstream's get_remote_gateways over config.gateways: every
// gateway but this one, in document order. localRequired refuses a
// coordinator that is not itself a gateway.
func (s *server) diskPeers(doc *config.Doc, localRequired bool) ([]string, error) {
	names := sortedNames(doc.Gateways)
	var out []string
	local := false
	for _, gw := range names {
		if doc.Gateways[gw] == nil {
			continue
		}
		if gw == s.Gateway {
			local = true
			continue
		}
		out = append(out, gw)
	}
	if localRequired && !local {
		return nil, httpErr(http.StatusBadRequest, "%s cannot be used to perform this operation because it is not defined within the gateways configuration", s.Gateway)
	}
	return out, nil
}

// fanout is coordinate with call_api's wording for a refusal of the local
// step when nothing ran before it ("failed on <gw>. <msg>"), since here the
// local step is the internal route upstream would have called.
func (s *server) fanout(ctx context.Context, p plan) (string, int, error) {
	text, status, err := s.coordinate(ctx, p)
	if err == nil {
		return text, status, nil
	}
	var he *httpError
	var rej *config.Rejection
	if errors.As(err, &he) || errors.As(err, &rej) {
		st, msg := s.classify(err)
		return fmt.Sprintf("failed on %s. %s", s.Gateway, msg), st, nil
	}
	return "", 0, err
}

func (s *server) disks() echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := params(c)
		if err != nil {
			return err
		}
		doc, err := s.load(c.Request().Context())
		if err != nil {
			return err
		}
		if strings.ToLower(f.get("config", "no")) == "yes" {
			all, ok := docPath(doc, "disks")
			if !ok {
				all = map[string]any{}
			}
			// status=yes (ours) adds each disk's status as GET /api/disk gives it, so that
			// gwcli needs one request for every disk's state instead of one per disk; an
			// upstream API ignores the field and gwcli falls back to the per-disk route.
			if strings.ToLower(f.get("status", "no")) == "yes" {
				for id, entry := range all.(map[string]any) {
					if m, isMap := entry.(map[string]any); isMap {
						m["status"] = s.diskStatus(id)
					}
				}
			}
			return writeJSON(c, http.StatusOK, map[string]any{"disks": all})
		}
		return writeJSON(c, http.StatusOK, map[string]any{"disks": sortedNames(doc.Disks)})
	}
}

func (s *server) disk() echo.HandlerFunc {
	return func(c echo.Context) error {
		pool, image := param(c, "pool"), param(c, "image")
		f, err := params(c)
		if err != nil {
			return err
		}
		switch c.Request().Method {
		case http.MethodGet:
			doc, err := s.load(c.Request().Context())
			if err != nil {
				return err
			}
			id := diskID(pool, image)
			entry, ok := docPath(doc, "disks", id)
			m, isMap := entry.(map[string]any)
			if !ok || !isMap {
				return diskNotFound(id)
			}
			m["status"] = s.diskStatus(id)
			return writeJSON(c, http.StatusOK, m)
		case http.MethodDelete:
			return s.deleteDisk(c, f, pool, image)
		}
		return s.putDisk(c, f, pool, image)
	}
}

// diskRequest is a validated PUT /api/disk.
type diskRequest struct {
	pool, image, mode, backstore string
	// sizeText is the size as received (forwarded to peers as is); size is
	// it in bytes (0 when absent).
	sizeText string
	size     int64
	count    int
	// suffixed is upstream's count != '1' (a text test: "01" gives image1)
	suffixed bool
	wwn      string
	controls settings.Controls
	// controlsText is the raw form field, present when hasControls.
	controlsText string
	hasControls  bool
}

// names are the images a create registers: image, or image1..imageN.
func (r *diskRequest) names() []string {
	if !r.suffixed {
		return []string{r.image}
	}
	out := make([]string, 0, r.count)
	for i := 1; i <= r.count; i++ {
		out = append(out, r.image+strconv.Itoa(i))
	}
	return out
}

// validDisk is upstream's valid_disk for create, resize and reconfigure
// (plus the checks its caller makes before it), answering 400 with
// upstream's text where upstream crashed into a 500.
func (s *server) validDisk(ctx context.Context, doc *config.Doc, f form, pool, image string) (*diskRequest, error) {
	mode, hasMode := f.lookup("mode")
	shownMode := mode
	if !hasMode {
		shownMode = "None"
	}
	r := &diskRequest{pool: pool, image: image, mode: mode, count: 1}
	disk := doc.Disks[diskID(pool, image)]
	if mode == "create" {
		r.backstore = f.get("backstore", rbd.BackstoreUserRBD)
	} else if disk != nil {
		r.backstore = disk.Backstore
	} else {
		if mode == "resize" || mode == "reconfigure" {
			return nil, diskNotDefined(pool, image)
		}
		return nil, httpErr(http.StatusBadRequest, "disk operation mode '%s' is invalid", shownMode)
	}
	if !contains(supportedBackstores, r.backstore) {
		return nil, httpErr(http.StatusBadRequest, "Invalid '%s' backstore - Supported backstores: %s", r.backstore, strings.Join(supportedBackstores, ","))
	}
	if mode != "create" && mode != "resize" && mode != "reconfigure" {
		return nil, httpErr(http.StatusBadRequest, "disk operation mode '%s' is invalid", shownMode)
	}
	if r.controlsText, r.hasControls = f.lookup("controls"); r.hasControls {
		ctl, err := settings.ParseDiskControls(r.controlsText)
		if err != nil {
			return nil, httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
		}
		r.controls = ctl
	}
	r.sizeText = f.get("size", "")
	if mode == "create" || mode == "resize" {
		if _, err := s.Images.PoolID(ctx, pool); err != nil {
			if errors.Is(err, rbd.ErrPoolNotFound) {
				return nil, httpErr(http.StatusBadRequest, "pool name is invalid")
			}
			return nil, fmt.Errorf("look up pool %q: %w", pool, err)
		}
	}
	switch mode {
	case "create":
		if r.sizeText != "" {
			n, err := rbd.ParseSize(r.sizeText)
			if err != nil {
				return nil, httpErr(http.StatusBadRequest, "Size is invalid")
			}
			if n == 0 {
				return nil, errZeroSize
			}
			r.size = n
		}
		if err := checkDiskName(pool, image); err != nil {
			return nil, err
		}
		r.wwn = f.get("wwn", "")
		if r.wwn != "" {
			if other := doc.DiskByWWN(r.wwn); other != "" {
				return nil, httpErr(http.StatusBadRequest, "WWN %s is already in use by %s", r.wwn, other)
			}
			if !validWWN(r.wwn) {
				return nil, httpErr(http.StatusBadRequest, "WWN %s is invalid (at most %d printable characters, no spaces)", r.wwn, maxWWNLen)
			}
		}
		countText := f.get("count", "1")
		n, err := strconv.Atoi(countText)
		if err != nil || !isDigits(countText) || n < 1 || n > 10 {
			return nil, httpErr(http.StatusBadRequest, "invalid count specified, must be an integer (1-10)")
		}
		if n > 1 && r.wwn != "" {
			return nil, httpErr(http.StatusBadRequest, "WWN cannot be specified when count > 1")
		}
		r.count, r.suffixed = n, countText != "1"
		for _, name := range r.names() {
			if err := checkDiskName(pool, name); err != nil {
				return nil, err
			}
			if doc.Disks[diskID(pool, name)] != nil {
				return nil, httpErr(http.StatusBadRequest, "at least one rbd image(s) with that name/prefix is already defined")
			}
		}
	case "resize":
		n, err := rbd.ParseSize(r.sizeText)
		if err != nil {
			return nil, httpErr(http.StatusBadRequest, "Size is invalid")
		}
		r.size = n
		info, err := s.Images.Info(ctx, pool, image)
		if err != nil {
			return nil, httpErr(http.StatusBadRequest, "failed to get current size: %v", err)
		}
		if n <= info.Size {
			return nil, httpErr(http.StatusBadRequest, "%s", (&rbd.ResizeError{Current: info.Size, Requested: n}).Error())
		}
	}
	return r, nil
}

func isDigits(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) < 0
}

func validWWN(w string) bool {
	if len(w) > maxWWNLen {
		return false
	}
	for _, r := range w {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return false
		}
	}
	return true
}

func (s *server) putDisk(c echo.Context, f form, pool, image string) error {
	ctx := c.Request().Context()
	doc, err := s.load(ctx)
	if err != nil {
		return err
	}
	r, err := s.validDisk(ctx, doc, f, pool, image)
	if err != nil {
		return err
	}
	createImage := f.get("create_image", "true")
	if createImage != "true" && createImage != "false" {
		return httpErr(http.StatusBadRequest, "Invalid 'create_image' value %s", createImage)
	}
	if r.mode == "create" && (createImage == "false" || r.sizeText == "") {
		// No size: register existing images at their current size.
		for _, name := range r.names() {
			info, err := s.Images.Info(ctx, pool, name)
			switch {
			case errors.Is(err, rbd.ErrImageNotFound) && createImage == "true":
				return httpErr(http.StatusBadRequest, "Size parameter is required when creating a new image")
			case errors.Is(err, rbd.ErrImageNotFound):
				return httpErr(http.StatusBadRequest, "Image %s does not exist", diskID(pool, name))
			case err != nil:
				return fmt.Errorf("read size of %s: %w", diskID(pool, name), err)
			}
			if info.Size > r.size {
				r.size = info.Size
			}
		}
		r.sizeText = strconv.FormatInt(r.size, 10)
	}
	if r.mode == "reconfigure" {
		text, status, err := s.reconfigureDisk(ctx, diskID(pool, image), r.controls)
		if err != nil {
			return err
		}
		if status == http.StatusOK {
			return message(c, status, "lun reconfigured: "+text)
		}
		return message(c, status, text)
	}

	var remote []string
	if r.mode == "resize" {
		if remote, err = s.diskPeers(doc, false); err != nil {
			return err
		}
	}
	vars := map[string]string{"pool": pool, "image": r.image, "size": r.sizeText, "owner": s.Gateway, "mode": r.mode, "backstore": r.backstore}
	if r.wwn != "" {
		vars["wwn"] = r.wwn
	}
	if r.hasControls {
		vars["controls"] = r.controlsText
	}
	allocs := make([]allocation, 0, r.count)
	for _, name := range r.names() {
		allocs = append(allocs, allocation{pool: pool, image: name, size: r.size, backstore: r.backstore, wwn: r.wwn, controls: r.controls, resize: r.mode == "resize"})
	}
	if len(remote) == 0 {
		// A create calls no peer (they learn the disks from the config), so
		// the images of a count are registered in one commit: one epoch and
		// one reconcile per gateway instead of one per image.
		text, status, err := s.fanout(ctx, plan{
			label: "localhost", method: http.MethodPut, endpoint: "_disk",
			localFail: "LUN allocation failure",
			commit:    func(ctx context.Context) (*config.Doc, error) { return s.allocate(ctx, allocs...) },
		})
		if err != nil {
			return err
		}
		return message(c, status, "disk create/update "+text)
	}
	text, status := "successful", http.StatusOK
	for i, name := range r.names() {
		text, status, err = s.fanout(ctx, plan{
			after: remote, label: "localhost",
			method: http.MethodPut, endpoint: "_disk", element: pathSegments(pool, name), vars: vars,
			localFail: "LUN allocation failure",
			commit:    func(ctx context.Context) (*config.Doc, error) { return s.allocate(ctx, allocs[i]) },
		})
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			break
		}
	}
	return message(c, status, "disk create/update "+text)
}

// allocation is one image of a create or resize on the allocating host.
type allocation struct {
	pool, image, backstore, wwn string
	size                        int64
	controls                    settings.Controls
	resize                      bool
	// registered accepts a disk already in the config (an internal create
	// replayed), as upstream's allocate does.
	registered bool
}

// imageResized tells a LocalLIO that caches image sizes (the gateway
// reconciler does, because reading one costs an image open) to read this one
// again on its next reconcile.
func (s *server) imageResized(pool, image string) {
	if f, ok := s.LIO.(interface{ ForgetSizes(ids ...string) }); ok {
		f.ForgetSizes(diskID(pool, image))
	}
}

// imageSized hands a size just read to a LocalLIO that caches image sizes,
// so that the commit's check and the reconcile that follow do not open the
// image again.
func (s *server) imageSized(pool, image string, size int64) {
	if f, ok := s.LIO.(interface{ NoteSize(id string, size int64) }); ok {
		f.NoteSize(diskID(pool, image), size)
	}
}

// allocate is upstream's LUN.allocate on the allocating host, without the
// LIO part (a disk that no target exports has no storage object; mapping
// it creates one from the config): create each image or grow it, then
// register the disks with their WWNs in one commit, and return the
// committed document. An allocation that fails ends the run: the
// images allocated before it are still registered (upstream's loop over a
// count keeps them too), and the failure is the answer.
func (s *server) allocate(ctx context.Context, as ...allocation) (*config.Doc, error) {
	// the RBD work is a stage of the request's Server-Timing
	t0 := time.Now()
	regs := make([]registration, 0, len(as))
	var failed error
	for _, a := range as {
		reg, err := s.allocateImage(ctx, a)
		if err != nil {
			failed = err
			break
		}
		regs = append(regs, reg)
	}
	stagesOf(ctx).since("rbd", t0)
	if len(regs) == 0 {
		return nil, failed
	}
	if regs[0].resize {
		// a resize is one image and changes nothing in the config
		return s.load(ctx)
	}
	doc, err := s.commit(ctx, func(d *config.Doc) error {
		added := 0
		for _, r := range regs {
			switch err := s.register(d, r); {
			case errors.Is(err, errNoChange):
			case err != nil:
				return err
			default:
				added++
			}
		}
		if added == 0 {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if failed != nil {
		return nil, failed
	}
	return doc, nil
}

// registration is an allocated image's config entry to add.
type registration struct {
	allocation
	poolID int64
	wwn    string
}

// allocateImage creates the image of a, or grows it when it exists or a
// resizes it.
func (s *server) allocateImage(ctx context.Context, a allocation) (registration, error) {
	fail := func(err error) error {
		return httpErr(http.StatusInternalServerError, "LUN allocation failure - %v", err)
	}
	poolID, err := s.Images.PoolID(ctx, a.pool)
	if errors.Is(err, rbd.ErrPoolNotFound) {
		return registration{}, httpErr(http.StatusBadRequest, "LUN allocation failure - Pool '%s' does not exist. Unable to continue", a.pool)
	}
	if err != nil {
		return registration{}, fail(err)
	}
	// A create tries the image first: the name is free in the common case,
	// and a failed open costs as much as a create under TCG. A name that
	// is taken, and a resize, read the image as it is.
	created := false
	if !a.resize {
		err := s.Images.Create(ctx, a.pool, a.image, a.size)
		switch {
		case err == nil:
			created = true
		case !errors.Is(err, rbd.ErrImageExists):
			// upstream's wording, capitalised as it is
			return registration{}, httpErr(http.StatusInternalServerError, "LUN allocation failure - Failed to create rbd image %s in pool %s : %v", a.image, a.pool, err)
		}
	}
	if !created {
		info, err := s.Images.Info(ctx, a.pool, a.image)
		if err != nil {
			return registration{}, fail(err)
		}
		if err := rbd.CheckFeatures(a.image, info.Features); err != nil {
			return registration{}, httpErr(http.StatusBadRequest, "LUN allocation failure - %v", err)
		}
		if a.size > info.Size {
			err := s.Images.Resize(ctx, a.pool, a.image, a.size)
			// a concurrent resize that got there first is as good
			if err != nil && !errors.Is(err, rbd.ErrResizeNotLarger) {
				return registration{}, fail(fmt.Errorf("rbd image resize failed for %s: %w", a.image, err))
			}
		}
		s.imageResized(a.pool, a.image)
	}
	reg := registration{allocation: a, poolID: poolID, wwn: a.wwn}
	if !a.resize && reg.wwn == "" {
		if reg.wwn, err = newWWN(); err != nil {
			return registration{}, fail(err)
		}
	}
	return reg, nil
}

// register adds r's disk to d; errNoChange when an internal replay finds it
// registered already.
func (s *server) register(d *config.Doc, r registration) error {
	if d.Disks[diskID(r.pool, r.image)] != nil {
		if r.registered {
			return errNoChange
		}
		return httpErr(http.StatusBadRequest, "at least one rbd image(s) with that name/prefix is already defined")
	}
	controls, err := s.Settings.MergeDiskControls(nil, r.controls)
	if err != nil {
		return httpErr(http.StatusBadRequest, "Unexpected or invalid controls: %v", err)
	}
	_, err = d.AddDisk(config.NewDisk{
		Pool: r.pool, Image: r.image, PoolID: r.poolID, WWN: r.wwn,
		Backstore: r.backstore, AllocatingHost: s.Gateway, Controls: controls,
	}, s.now())
	return err
}

// newWWN is a random (version 4) UUID, the unit serial rtslib generates.
func newWWN() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate WWN: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func (s *server) deleteDisk(c echo.Context, f form, pool, image string) error {
	ctx := c.Request().Context()
	id := diskID(pool, image)
	doc, err := s.load(ctx)
	if err != nil {
		return err
	}
	disk := doc.Disks[id]
	if disk == nil {
		return diskNotDefined(pool, image)
	}
	if !contains(supportedBackstores, disk.Backstore) {
		return httpErr(http.StatusBadRequest, "Invalid '%s' backstore - Supported backstores: %s", disk.Backstore, strings.Join(supportedBackstores, ","))
	}
	if err := doc.CheckDiskDeletable(id); err != nil {
		return err
	}
	remote, err := s.diskPeers(doc, false)
	if err != nil {
		return err
	}
	preserve, hasPreserve := f.lookup("preserve_image")
	vars := map[string]string{"purge_host": s.Gateway, "backstore": disk.Backstore}
	if hasPreserve {
		vars["preserve_image"] = preserve
	}
	text, status, err := s.fanout(ctx, plan{
		before: remote, label: s.Gateway,
		method: http.MethodDelete, endpoint: "_disk", element: pathSegments(pool, image), vars: vars,
		localFail: "Failed to remove the LUN",
		commit: func(ctx context.Context) (*config.Doc, error) {
			return s.purgeDisk(ctx, pool, image, preserve == "true")
		},
	})
	if err != nil {
		return err
	}
	return message(c, status, "disk map deletion "+text)
}

// purgeDisk is remove_lun on the purge host: refuse while a target exports
// the disk, delete the image unless preserved, then drop the config entry.
// A disk already gone counts as removed.
func (s *server) purgeDisk(ctx context.Context, pool, image string, preserve bool) (*config.Doc, error) {
	id := diskID(pool, image)
	doc, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	if doc.Disks[id] == nil {
		return doc, nil
	}
	if err := doc.Fork().RemoveDisk(id); err != nil {
		return nil, removeFailure(err)
	}
	if !preserve {
		if err := s.Images.Remove(ctx, pool, image); err != nil {
			msg := "Unable to delete the underlying rbd image " + image
			switch {
			case errors.Is(err, rbd.ErrImageHasSnapshots):
				return nil, httpErr(http.StatusBadRequest, "Failed to remove the LUN - %s - Image has snapshots", msg)
			case errors.Is(err, rbd.ErrImageBusy):
				return nil, httpErr(http.StatusInternalServerError, "Failed to remove the LUN - %s", msg)
			}
			return nil, httpErr(http.StatusInternalServerError, "Failed to remove the LUN - %s: %v", msg, err)
		}
	}
	return s.commit(ctx, func(d *config.Doc) error {
		if d.Disks[id] == nil {
			return errNoChange
		}
		if err := d.RemoveDisk(id); err != nil {
			return removeFailure(err)
		}
		return nil
	})
}

func removeFailure(err error) error {
	var rej *config.Rejection
	if errors.As(err, &rej) {
		return httpErr(http.StatusBadRequest, "Failed to remove the LUN - %s", rej.Msg)
	}
	return err
}

func (s *server) internalDisk() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		pool, image := param(c, "pool"), param(c, "image")
		id := diskID(pool, image)
		f, err := params(c)
		if err != nil {
			return err
		}
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		switch c.Request().Method {
		case http.MethodGet:
			entry, ok := docPath(doc, "disks", id)
			if !ok {
				return diskNotFound(id)
			}
			return writeJSON(c, http.StatusOK, entry)
		case http.MethodDelete:
			purgeHost, err := required(f, "purge_host")
			if err != nil {
				return err
			}
			if doc.Disks[id] == nil {
				return diskNotFound(id)
			}
			if purgeHost == s.Gateway {
				doc, err = s.purgeDisk(ctx, pool, image, f.get("preserve_image", "") == "true")
				if err != nil {
					return err
				}
			} else if err := doc.Fork().RemoveDisk(id); err != nil {
				return removeFailure(err)
			}
			if err := s.reconcile(ctx, doc); err != nil {
				return httpErr(http.StatusInternalServerError, "Failed to remove the LUN - %v", err)
			}
			return message(c, http.StatusOK, "LUN removed")
		}
		mode, err := required(f, "mode")
		if err != nil {
			return err
		}
		switch mode {
		case "create", "resize":
			return s.internalAllocate(c, f, doc, pool, image, mode)
		case "activate", "deactivate":
			return s.internalActivation(c, f, pool, image, mode)
		}
		return httpErr(http.StatusBadRequest, "disk operation mode '%s' is invalid", mode)
	}
}

// parseBytes is upstream's convert_2_bytes: plain digits are bytes, else a
// size with an M/G/T suffix.
func parseBytes(text string) (int64, error) {
	if isDigits(text) {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n, nil
		}
	}
	return rbd.ParseSize(text)
}

func (s *server) internalAllocate(c echo.Context, f form, doc *config.Doc, pool, image, mode string) error {
	ctx := c.Request().Context()
	id := diskID(pool, image)
	backstore := ""
	if mode == "create" {
		b, err := required(f, "backstore")
		if err != nil {
			return err
		}
		backstore = b
	} else {
		d := doc.Disks[id]
		if d == nil {
			return diskNotFound(id)
		}
		backstore = d.Backstore
	}
	if !contains(supportedBackstores, backstore) {
		return httpErr(http.StatusBadRequest, "Invalid '%s' backstore - Supported backstores: %s", backstore, strings.Join(supportedBackstores, ","))
	}
	var controls settings.Controls
	if text, ok := f.lookup("controls"); ok {
		ctl, err := settings.ParseDiskControls(text)
		if err != nil {
			return httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
		}
		controls = ctl
	}
	formPool, okPool := f.lookup("pool")
	sizeText, okSize := f.lookup("size")
	owner, okOwner := f.lookup("owner")
	if !okPool || !okSize || !okOwner {
		return httpErr(http.StatusBadRequest, "Invalid Request - need to provide pool, size and owner")
	}
	size, err := parseBytes(sizeText)
	if err != nil {
		return httpErr(http.StatusBadRequest, "Size is invalid")
	}
	if size == 0 && mode == "create" {
		return errZeroSize
	}
	if mode == "create" {
		if err := checkDiskName(pool, image); err != nil {
			return err
		}
	}
	if formPool != pool {
		return httpErr(http.StatusBadRequest, "Invalid Request - pool %s does not match the disk %s", formPool, id)
	}
	if owner == s.Gateway {
		wwn := f.get("wwn", "")
		if wwn != "" && !validWWN(wwn) {
			return httpErr(http.StatusBadRequest, "WWN %s is invalid (at most %d printable characters, no spaces)", wwn, maxWWNLen)
		}
		doc, err = s.allocate(ctx, allocation{pool: pool, image: image, size: size, backstore: backstore, wwn: wwn, controls: controls, resize: mode == "resize", registered: true})
		if err != nil {
			return err
		}
	}
	// Another gateway allocated and committed before calling here; this
	// one only converges its LIO (a resize reaches dev_size this way).
	if mode == "resize" {
		s.imageResized(pool, image)
	}
	if err := s.reconcile(ctx, doc); err != nil {
		return httpErr(http.StatusInternalServerError, "LUN allocation failure - %v", err)
	}
	if mode == "create" {
		return message(c, http.StatusOK, "LUN created")
	}
	return message(c, http.StatusOK, "LUN resized")
}

// withoutDisk is doc as LIO should look while the disk is deactivated: no
// target, client or group maps it, so its LUNs and storage object go.
func withoutDisk(doc *config.Doc, id string) *config.Doc {
	d := doc.Fork()
	d.DetachDisk(id)
	return d
}

// diskInUse names an initiator logged in through a LUN of the disk: an ACL
// mapping it, or any session of a demo-mode target exporting it.
func (s *server) diskInUse(ctx context.Context, doc *config.Doc, id string) (bool, error) {
	for _, iqn := range sortedNames(doc.Targets) {
		t := doc.Targets[iqn]
		if t == nil {
			continue
		}
		if _, ok := t.Disks[id]; !ok {
			continue
		}
		if !t.ACLEnabled {
			n, err := s.LIO.Sessions(ctx, iqn)
			if err != nil {
				return false, err
			}
			if n > 0 {
				return true, nil
			}
		}
		for _, cIQN := range sortedNames(t.Clients) {
			cl := t.Clients[cIQN]
			if cl == nil {
				continue
			}
			if _, ok := cl.Luns[id]; !ok {
				continue
			}
			state, err := s.LIO.ClientState(ctx, iqn, cIQN)
			if err != nil {
				return false, err
			}
			if state == "LOGGED_IN" {
				return true, nil
			}
		}
	}
	return false, nil
}

// activation checks what _disk activate/deactivate need and returns the
// document LIO must converge to: the disk unmapped, or mapped with
// controls merged into its stored ones.
func (s *server) activation(ctx context.Context, pool, image, mode string, controls settings.Controls) (*config.Doc, error) {
	id := diskID(pool, image)
	doc, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	disk := doc.Disks[id]
	if disk == nil {
		return nil, diskNotFound(id)
	}
	info, err := s.Images.Info(ctx, pool, image)
	switch {
	case errors.Is(err, rbd.ErrImageNotFound):
		return nil, httpErr(http.StatusNotFound, "LUN %s failure - rbd image %s not found", mode, id)
	case err != nil || info.Size == 0:
		s.Logger.Error("LUN size unknown", "disk", id, "err", err)
		return nil, httpErr(http.StatusInternalServerError, "LUN %s failure", mode)
	}
	if disk.Owner == nil {
		return nil, httpErr(http.StatusBadRequest, "LUN %s failure - Disk %s/%s must be assigned to a target", mode, disk.Pool, disk.Image)
	}
	if mode == "deactivate" {
		busy, err := s.diskInUse(ctx, doc, id)
		if err != nil {
			return nil, httpErr(http.StatusInternalServerError, "deactivate failed - %v", err)
		}
		if busy {
			return nil, httpErr(http.StatusBadRequest, "deactivate failed - LUN %s in-use", image)
		}
		return withoutDisk(doc, id), nil
	}
	merged, err := s.Settings.MergeDiskControls(disk.Controls, controls)
	if err != nil {
		return nil, httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
	}
	doc.MutDisk(id).Controls = merged
	return doc, nil
}

func (s *server) internalActivation(c echo.Context, f form, pool, image, mode string) error {
	ctx := c.Request().Context()
	var controls settings.Controls
	if text, ok := f.lookup("controls"); ok {
		ctl, err := settings.ParseDiskControls(text)
		if err != nil {
			return httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
		}
		controls = ctl
	}
	doc, err := s.activation(ctx, pool, image, mode, controls)
	if err != nil {
		return err
	}
	if err := s.reconcile(ctx, doc); err != nil {
		return httpErr(http.StatusInternalServerError, "%s failed - %v", mode, err)
	}
	if mode == "deactivate" {
		return message(c, http.StatusOK, "LUN deactivated")
	}
	return message(c, http.StatusOK, "LUN activated")
}

// reactivate runs _disk activate on gws and on this gateway (at position
// local: first or last), with controls when given, and returns call_api's
// text and status.
func (s *server) reactivate(ctx context.Context, id string, remote []string, localFirst, localToo bool, controls settings.Controls) (string, int, error) {
	pool, image, _ := config.SplitDiskID(id)
	vars := map[string]string{"mode": "activate"}
	if controls != nil {
		b, err := json.Marshal(controls)
		if err != nil {
			return "", 0, fmt.Errorf("encode controls: %w", err)
		}
		vars["controls"] = string(b)
	}
	p := plan{
		label:  s.Gateway,
		method: http.MethodPut, endpoint: "_disk", element: pathSegments(pool, image), vars: vars,
		localFail: "activate failed",
		commit: func(ctx context.Context) (*config.Doc, error) {
			if !localToo {
				return nil, nil
			}
			return s.activation(ctx, pool, image, "activate", nil)
		},
	}
	if localFirst {
		p.label, p.after = "localhost", remote
	} else {
		p.before = remote
	}
	return s.fanout(ctx, p)
}

// reconfigureDisk is upstream's lun_reconfigure (spec 5.3): deactivate the
// disk everywhere, activate it here with the new controls, then on the
// others, and store the controls only if every gateway took them. It
// always tries to re-activate.
func (s *server) reconfigureDisk(ctx context.Context, id string, controls settings.Controls) (string, int, error) {
	pool, image, _ := config.SplitDiskID(id)
	doc, err := s.load(ctx)
	if err != nil {
		return "", 0, err
	}
	if doc.Disks[id] == nil {
		return fmt.Sprintf("rbd image %s not found", id), http.StatusNotFound, nil
	}
	remote, err := s.diskPeers(doc, true)
	if err != nil {
		_, msg := s.classify(err)
		return msg, http.StatusBadRequest, nil
	}
	text, status, err := s.fanout(ctx, plan{
		label: "localhost", after: remote,
		method: http.MethodPut, endpoint: "_disk", element: pathSegments(pool, image), vars: map[string]string{"mode": "deactivate"},
		localFail: "deactivate failed",
		commit: func(ctx context.Context) (*config.Doc, error) {
			return s.activation(ctx, pool, image, "deactivate", nil)
		},
	})
	if err != nil {
		return "", 0, err
	}
	if status != http.StatusOK {
		return "failed to deactivate disk: " + text, status, nil
	}

	localErr := error(nil)
	local, err := s.activation(ctx, pool, image, "activate", controls)
	if err == nil {
		err = s.reconcile(ctx, local)
	}
	if err != nil {
		localErr = err
		s.Logger.Error("local LUN activation failed", "disk", id, "err", err)
	}
	var actControls settings.Controls
	if localErr == nil {
		actControls = controls
		if actControls == nil {
			actControls = settings.Controls{}
		}
	}
	// on a local failure this gateway is re-activated with its old controls
	aText, aStatus, err := s.reactivate(ctx, id, remote, true, localErr != nil, actControls)
	if err != nil {
		return "", 0, err
	}
	if localErr != nil {
		msg := localErr.Error()
		var he *httpError
		if errors.As(localErr, &he) {
			msg = he.Msg
		}
		return msg, http.StatusInternalServerError, nil
	}
	if aStatus != http.StatusOK {
		return aText, aStatus, nil
	}
	_, err = s.commit(ctx, func(d *config.Doc) error {
		disk := d.Disks[id]
		if disk == nil {
			return diskNotFound(id)
		}
		merged, err := s.Settings.MergeDiskControls(disk.Controls, controls)
		if err != nil {
			return httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
		}
		if mapsEqual(merged, disk.Controls) {
			return errNoChange
		}
		return d.SetDiskControls(id, merged, s.now())
	})
	if err != nil {
		_, msg := s.classify(err)
		return "Could not commit controls: " + msg, http.StatusInternalServerError, nil
	}
	return aText, http.StatusOK, nil
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func (s *server) diskSnap() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		pool, image, name := param(c, "pool"), param(c, "image"), param(c, "name")
		f, err := params(c)
		if err != nil {
			return err
		}
		if err := rbd.ValidateSnapshotName(name); err != nil {
			return httpErr(http.StatusBadRequest, "snapshot name is invalid")
		}
		id := diskID(pool, image)
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		if doc.Disks[id] == nil {
			return diskNotFound(id)
		}
		var text string
		status := http.StatusOK
		if c.Request().Method == http.MethodDelete {
			err := s.Images.RemoveSnapshot(ctx, pool, image, name)
			text, status = snapshotResult(err, "delete", name, "snapshot deleted")
		} else {
			switch f.get("mode", "") {
			case "create":
				err := s.Images.CreateSnapshot(ctx, pool, image, name)
				text, status = snapshotResult(err, "create", name, "snapshot created")
			case "rollback":
				if text, status, err = s.rollback(ctx, doc, pool, image, name); err != nil {
					return err
				}
			default:
				text, status = "mode is invalid", http.StatusBadRequest
			}
		}
		if status == http.StatusOK {
			return message(c, status, "disk snapshot "+text)
		}
		return message(c, status, text)
	}
}

// snapshotResult is upstream's answer to snapshot operation verb on name: done,
// the refusal of a taken name (create) or of a missing one (delete, rollback),
// or the failure.
func snapshotResult(err error, verb, name, done string) (string, int) {
	switch {
	case err == nil:
		return done, http.StatusOK
	case verb == "create" && errors.Is(err, rbd.ErrSnapshotExists):
		return fmt.Sprintf("snapshot %s already exists", name), http.StatusBadRequest
	case verb != "create" && errors.Is(err, rbd.ErrSnapshotNotFound):
		return fmt.Sprintf("snapshot %s does not exist", name), http.StatusNotFound
	}
	return fmt.Sprintf("failed to %s snapshot: %v", verb, err), http.StatusBadRequest
}

// rollback is upstream's _disksnap_rollback: deactivate the disk on every
// gateway (this one last), roll back, then always re-activate.
func (s *server) rollback(ctx context.Context, doc *config.Doc, pool, image, name string) (string, int, error) {
	id := diskID(pool, image)
	remote, err := s.diskPeers(doc, true)
	if err != nil {
		_, msg := s.classify(err)
		return msg, http.StatusBadRequest, nil
	}
	text, status, err := s.fanout(ctx, plan{
		before: remote, label: s.Gateway,
		method: http.MethodPut, endpoint: "_disk", element: pathSegments(pool, image), vars: map[string]string{"mode": "deactivate"},
		localFail: "deactivate failed",
		commit: func(ctx context.Context) (*config.Doc, error) {
			return s.activation(ctx, pool, image, "deactivate", nil)
		},
	})
	if err != nil {
		return "", 0, err
	}
	if status == http.StatusOK {
		err := s.Images.RollbackSnapshot(ctx, pool, image, name)
		text, status = snapshotResult(err, "rollback", name, "rolled back to snapshot")
	} else {
		text = "failed to deactivate disk: " + text
	}
	aText, aStatus, err := s.reactivate(ctx, id, remote, false, true, nil)
	if err != nil {
		return "", 0, err
	}
	if status == http.StatusOK && aStatus != http.StatusOK {
		return aText, aStatus, nil
	}
	return text, status, nil
}

// diskStatus is the `status` of GET /api/disk: the tracker's view, or upstream's
// {"state": "Unknown"} when tcmu-runner reports nothing about the image (no mgr,
// no tcmu-runner, or before the first poll).
func (s *server) diskStatus(id string) any {
	if s.DeviceStatus != nil {
		if st, ok := s.DeviceStatus.Status(id); ok {
			return st
		}
	}
	return map[string]any{"state": devstatus.StateUnknown}
}
