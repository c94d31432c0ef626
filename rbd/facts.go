package rbd

import (
	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"
)

// Facts are what gwcli shows of an image: one read-only open, no watch, no lock queries.
type Facts struct {
	Size         int64
	FeatureNames []string
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
