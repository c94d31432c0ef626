package rbd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kernelTestsEnv enables the tests that map real block devices: they need root, the
// rbd and nbd modules and a cluster the kernel can reach (the LIO test VM has all of
// them; this build host has no modules).
const kernelTestsEnv = "CEPH_ISCSI_KERNEL_TESTS"

func requireKernel(t *testing.T) {
	t.Helper()
	if os.Getenv(kernelTestsEnv) != "1" {
		t.Skipf("real krbd/rbd-nbd mapping: set %s=1 (root, rbd and nbd modules)", kernelTestsEnv)
	}
}

func TestKernelMapping(t *testing.T) {
	requireKernel(t)
	conn, c := connect(t)
	ctx := context.Background()
	creds, err := CredentialsFromConn(ctx, conn, "client.admin", c.Conf)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if strings.Contains(logs.String(), creds.Key) {
			t.Errorf("key in the logs")
		}
		t.Logf("mapper log:\n%s", logs.String())
	})

	for _, driver := range []Driver{DriverAuto, DriverNBD} {
		name := string(driver)
		if driver == DriverAuto {
			name = "auto"
		}
		t.Run(name, func(t *testing.T) {
			img := uniqueImage(t, conn)
			if err := Create(conn, testPool, img, 64<<20, 0); err != nil {
				t.Fatal(err)
			}
			m := NewMapper(MapperOptions{Credentials: creds, Driver: driver, Logger: logger, Timeout: 20 * time.Second})
			start := time.Now()
			dev, err := m.Map(ctx, testPool, img)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mapped %s at %s in %v", img, dev, time.Since(start))
			t.Cleanup(func() { m.Unmap(ctx, testPool, img) })
			wantPrefix := map[Driver]string{DriverAuto: "/dev/rbd", DriverNBD: "/dev/nbd"}[driver]
			if !strings.HasPrefix(dev, wantPrefix) {
				t.Errorf("device %s, want %s*", dev, wantPrefix)
			}

			// write through the device, read through librbd
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes4k('k'), 4096); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			h, closeImage := openImage(t, conn, img, true)
			buf := make([]byte, 4096)
			_, err = h.ReadAt(buf, 4096)
			closeImage()
			if err != nil || !bytes.Equal(buf, bytes4k('k')) {
				t.Errorf("data written through %s not in the image: %v", dev, err)
			}

			info, err := Info(conn, testPool, img)
			if err != nil || len(info.LockOwners) != 1 || len(info.Watchers) != 1 {
				t.Errorf("Info while mapped: owners %v watchers %v, %v", info.LockOwners, info.Watchers, err)
			}

			maps, err := m.Mapped(ctx)
			if err != nil || !slices.ContainsFunc(maps, func(mp Mapping) bool { return mp.Device == dev && isHeadOf(testPool, img)(mp) }) {
				t.Errorf("Mapped = %v, %v; want %s", maps, err, dev)
			}
			// a fresh Mapper (a restarted daemon) finds the mapping instead of adding one
			again, err := NewMapper(MapperOptions{Credentials: creds, Logger: logger}).Map(ctx, testPool, img)
			if err != nil || again != dev {
				t.Errorf("Map after restart = %s, %v; want %s", again, err, dev)
			}

			if driver == DriverAuto {
				// `exclusive`: a second krbd mapping of a live export is refused, not
				// handed the lock (the failover-safety argument of the package doc)
				m2 := NewMapper(MapperOptions{Credentials: creds, Timeout: 3 * time.Second})
				spec, err := m2.krbdSpec(testPool, img)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				err = writeSysfs(m.krbdControl("add"), []byte(spec))
				t.Logf("second exclusive mapping: %v after %v", sanitizeErr(err, creds.Key), time.Since(start))
				if !errors.Is(err, syscall.EROFS) {
					t.Errorf("second exclusive mapping: %v, want EROFS (peer will not release lock)", err)
				}
				if err == nil {
					maps, _ := m.Mapped(ctx)
					for _, mp := range maps {
						if mp.Device != dev && isHeadOf(testPool, img)(mp) {
							m.krbdUnmap(mp)
						}
					}
					t.Error("a second exclusive krbd mapping was accepted")
				}
			}

			if err := m.Unmap(ctx, testPool, img); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dev); err == nil && driver != DriverNBD {
				t.Errorf("%s still exists after unmap", dev)
			}
			if _, err := m.Device(ctx, testPool, img); err == nil {
				t.Errorf("still mapped after Unmap")
			}
			if err := m.Unmap(ctx, testPool, img); err != nil {
				t.Errorf("second Unmap: %v", err)
			}
			if err := Remove(ctx, conn, testPool, img, RemoveOptions{Timeout: 10 * time.Second, Interval: 200 * time.Millisecond}); err != nil {
				t.Errorf("Remove after unmap: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(DefaultSysfsRoot, "bus", "rbd")); err != nil {
		t.Errorf("krbd never loaded: %v", err)
	}
}
