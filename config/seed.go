package config

import "time"

// TimeLayout is the timestamp format of created/updated fields.
const TimeLayout = "2006/01/02 15:04:05"

// Timestamp formats t the way the Python gateways stamp created/updated:
// UTC, "YYYY/MM/DD HH:MM:SS".
func Timestamp(t time.Time) string { return t.UTC().Format(TimeLayout) }

// EmptyAuth is the auth block with CHAP disabled.
func EmptyAuth() Auth { return Auth{} }

// NewDoc is the seed written into an empty gateway.conf object: no disks,
// gateways or targets, discovery CHAP off, epoch 0 and no "updated" stamp yet.
func NewDoc(now time.Time) *Doc {
	return &Doc{
		Version:       CurrentVersion,
		Epoch:         0,
		Created:       Timestamp(now),
		Updated:       "",
		Disks:         map[string]*Disk{},
		Gateways:      map[string]*Gateway{},
		Targets:       map[string]*Target{},
		DiscoveryAuth: EmptyAuth(),
	}
}

// NewTarget is the seed of a target created in "init" mode: ACLs on, no
// "updated" stamp and no ip_list until the first gateway joins.
func NewTarget(now time.Time) *Target {
	return &Target{
		Disks:      map[string]LunRef{},
		Clients:    map[string]*Client{},
		Portals:    map[string]*Portal{},
		Groups:     map[string]*Group{},
		Controls:   map[string]any{},
		ACLEnabled: true,
		Auth:       EmptyAuth(),
		Created:    Timestamp(now),
	}
}

// NewClient is the seed of a client (initiator) entry. Clients carry no
// timestamps.
func NewClient() *Client {
	return &Client{Auth: EmptyAuth(), Luns: map[string]LunRef{}}
}

// NewGroup is an empty host group.
func NewGroup() *Group {
	return &Group{Members: []string{}, Disks: map[string]LunRef{}}
}
