package rbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"
)

// Facts are what gwcli shows of an image: one read-only open, no watch, no lock queries.
type Facts struct {
	Size         int64
	FeatureNames []string // sorted
	Snapshots    []Snapshot
}

// ReadFacts reads the size, features and snapshots of pool/image in one open. A missing
// image or pool is ErrImageNotFound or ErrPoolNotFound.
func ReadFacts(conn *gorados.Conn, pool, image string) (Facts, error) {
	var f Facts
	err := withImage(conn, pool, image, true, func(_ *gorados.IOContext, img *gorbd.Image) error {
		size, err := img.GetSize()
		if err != nil {
			return imageErr("size of", pool, image, err)
		}
		f.Size = int64(size)
		feats, err := img.GetFeatures()
		if err != nil {
			return imageErr("features of", pool, image, err)
		}
		fs := gorbd.FeatureSet(feats)
		f.FeatureNames = fs.Names()
		slices.Sort(f.FeatureNames)
		infos, err := img.GetSnapshotNames()
		if err != nil {
			return imageErr("list snapshots of", pool, image, err)
		}
		for _, s := range infos {
			f.Snapshots = append(f.Snapshots, Snapshot{ID: s.Id, Name: s.Name, Size: int64(s.Size)})
		}
		return nil
	})
	return f, err
}

// Where librbd keeps a format 2 image's metadata: the pool's directory maps names to ids
// (omap "name_<image>" -> encoded id), and the image's header holds "size" and "features"
// (little-endian u64) and one "snapshot_<id>" key per snapshot.
const (
	directoryObject = "rbd_directory"
	dirNamePrefix   = "name_"
	headerSnapPref  = "snapshot_"
)

// BulkFacts reads the facts of many images of one pool: one directory read for the pool,
// then one read of each image's header (parallel at once), instead of an image open, several
// round trips and a close per image. An image with snapshots, or that the directory does not
// list (format 1), is read with ReadFacts. Images that do not exist are absent from the
// result; other errors are returned per image in errs.
func BulkFacts(conn *gorados.Conn, pool string, images []string, parallel int) (facts map[string]Facts, errs map[string]error, err error) {
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return nil, nil, err
	}
	defer ioctx.Destroy()
	dir, err := ioctx.GetAllOmapValues(directoryObject, "", dirNamePrefix, 1024)
	if err != nil && errno(err) != errnoENOENT {
		return nil, nil, fmt.Errorf("read the image directory of pool %q: %w", pool, err)
	}
	if parallel <= 0 {
		parallel = 1
	}
	facts, errs = map[string]Facts{}, map[string]error{}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, parallel)
	)
	for _, img := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			f, ok, err := headerFacts(ioctx, dir[dirNamePrefix+img])
			if err == nil && !ok {
				f, err = ReadFacts(conn, pool, img)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				facts[img] = f
			case !errors.Is(err, ErrImageNotFound):
				errs[img] = err
			}
		}()
	}
	wg.Wait()
	return facts, errs, nil
}

// headerFacts reads size and features from the header of the image whose encoded id is
// rawID; ok is false when the image must be opened instead (not listed, or snapshots).
func headerFacts(ioctx *gorados.IOContext, rawID []byte) (Facts, bool, error) {
	if len(rawID) < 4 {
		return Facts{}, false, nil
	}
	n := binary.LittleEndian.Uint32(rawID)
	if int(n) != len(rawID)-4 {
		return Facts{}, false, nil
	}
	id := string(rawID[4:])
	op := gorados.CreateReadOp()
	defer op.Release()
	vals := op.GetOmapValuesByKeys([]string{"size", "features"})
	snaps := op.GetOmapValues("", headerSnapPref, 1)
	if err := op.Operate(ioctx, headerPrefix+id, gorados.OperationNoFlag); err != nil {
		if errno(err) == errnoENOENT {
			return Facts{}, false, nil
		}
		return Facts{}, false, fmt.Errorf("read image header %s: %w", id, err)
	}
	if kv, err := snaps.Next(); err != nil || kv != nil {
		return Facts{}, false, nil
	}
	var f Facts
	got := 0
	for {
		kv, err := vals.Next()
		if err != nil {
			return Facts{}, false, fmt.Errorf("read image header %s: %w", id, err)
		}
		if kv == nil {
			break
		}
		if len(kv.Value) != 8 {
			return Facts{}, false, nil
		}
		v := binary.LittleEndian.Uint64(kv.Value)
		switch kv.Key {
		case "size":
			f.Size = int64(v)
			got++
		case "features":
			fs := gorbd.FeatureSet(v)
			f.FeatureNames = fs.Names()
			slices.Sort(f.FeatureNames)
			got++
		}
	}
	return f, got == 2, nil
}

// HeaderSize is pool/image's size read as BulkFacts reads it, for one image: its
// id from the pool's directory (one omap key) and its size from its header, two
// round trips where an image open takes several. An image BulkFacts would open
// (snapshots, format 1, not listed) is opened; a missing one is ErrImageNotFound,
// a missing pool ErrPoolNotFound.
func HeaderSize(conn *gorados.Conn, pool, image string) (int64, error) {
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return 0, err
	}
	defer ioctx.Destroy()
	var rawID []byte
	op := gorados.CreateReadOp()
	defer op.Release()
	key := dirNamePrefix + image
	vals := op.GetOmapValuesByKeys([]string{key})
	switch err := op.Operate(ioctx, directoryObject, gorados.OperationNoFlag); {
	case err == nil:
		kv, err := vals.Next()
		if err != nil {
			return 0, fmt.Errorf("read the image directory of pool %q: %w", pool, err)
		}
		if kv != nil && kv.Key == key {
			rawID = kv.Value
		}
	case errno(err) != errnoENOENT:
		return 0, fmt.Errorf("read the image directory of pool %q: %w", pool, err)
	}
	f, ok, err := headerFacts(ioctx, rawID)
	if err != nil {
		return 0, err
	}
	if !ok {
		return Size(conn, pool, image)
	}
	return f.Size, nil
}
