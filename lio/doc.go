// Package lio owns the local LIO (Linux-IO target) state: it is the only
// package that reads or writes configfs. It reconciles the kernel's
// storage objects, ALUA groups, iSCSI targets, TPGs, portals, LUNs, ACLs,
// mapped LUNs and discovery auth towards a desired State built from the
// shared gateway configuration.
//
// It is layered like a level-triggered controller:
//
//   - a pure model (State and its parts), where each object is identified by
//     its configfs path, as in rtslib;
//   - Observe, which reads the actual tree under an FS root, and NewPlan, a
//     pure and deterministic diff from the observed to the desired State;
//   - Apply, which executes a Plan against an FS and reports what it really
//     did, even on failure.
//
// Build turns a Spec (LIO's view of what this gateway serves: disks,
// targets, clients, tuning and the backstore choice) into the desired
// State. Package gateway makes the Spec from the configuration document
// and the settings and resolves everything that needs RADOS or RBD (disk
// sizes, mapped device paths, decrypted CHAP secrets); this package does
// not know the document, the settings file or CHAP encryption.
//
// Managed objects: a storage object is managed when its name is a
// backstore_object_name of the config (Managed.StorageObjects) or it is in
// the desired State; an iSCSI target is managed when its IQN is a target of
// the config (Managed.Targets) or it is desired. Everything inside a managed
// target is managed. Anything else in configfs (other backstores, other
// targets, empty HBAs, the iscsi fabric directory itself) is left alone.
// Discovery auth is managed only when the desired State carries it.
//
// This package must not talk to RADOS, RBD, the network or HTTP, and must
// not load kernel modules. CHAP secrets never appear in Plan.String, JSON
// plans or errors; see Secret.
package lio
