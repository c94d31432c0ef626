// Package stats owns the gateway statistics of rbd-target-gw: a Prometheus
// collector that turns one pass of lio.ReadStatistics per scrape into const
// metrics (upstream's nine metrics with their names, labels and meanings,
// plus per-LUN target-port totals, session counts and the gateway's
// version), and the JSON report of GET /api/stats, computed from the same
// reading.
//
// It reads LIO only through package lio's statistics reader and keeps no
// state between scrapes. It must not touch configfs, RADOS or the network
// itself, and knows no HTTP: package api serves what it produces.
package stats
