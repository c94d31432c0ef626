#!/usr/bin/env bash
# ceph-cluster.sh up|down|status DIR — a real single-node Ceph cluster for development and
# tests: 1 mon + 1 mgr + 1 OSD on 127.0.0.1, cephx on, pool `rbd` initialised, no systemd.
# The mgr runs no Python modules (mgr_module_path is an empty dir): the commands the
# gateway sends it (`service status`, `df`, `osd pool stats`) are the mgr's own C++ ones,
# and the modules would cost seconds of start-up and pull Python packages.
#
# Everything lives in DIR (ceph.conf, keyrings, data, logs, sockets, pid files), so several
# clusters can run side by side when each gets its own ports:
#   CEPH_DEV_MON_PORT   msgr v2 port of the mon (default 3300); v1 uses CEPH_DEV_MON_PORT+1
#   CEPH_DEV_OSD_PORTS  OSD bind range "MIN-MAX" (default 6800-6899)
#   CEPH_DEV_STORE      memstore (default; fastest, RAM-backed) or bluestore (sparse file)
#   CEPH_DEV_POOL       pool to create and initialise for RBD (default rbd)
# `up` refuses to start when the mon ports are taken (another cluster would answer for us),
# restarts stopped daemons of an existing DIR without re-creating data, and prints
# CEPH_CONF=... and CEPH_KEYRING=... on stdout. `down` stops only the daemons whose pid
# files are in DIR and whose command line names DIR; `down DIR --purge` also deletes DIR.
set -euo pipefail

usage() { echo "usage: $0 up|down|status DIR [--purge]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
CMD=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/ceph.conf
KEYRING=$DIR/ceph.client.admin.keyring
# daemons must not see the admin keyring (cephx fails with handle_auth_bad_method)
unset CEPH_CONF CEPH_KEYRING CEPH_ARGS
CEPH=(ceph -c "$CONF" -k "$KEYRING" --connect-timeout 15)

T0=$EPOCHREALTIME
log() { printf '[ceph-cluster %6.2fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*" >&2; }
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
retry() { # retry SECONDS CMD... : until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}

down() {
  [[ -d $DIR/run ]] || { log "no cluster in $DIR"; return 0; }
  local pids=() f pid
  # OSD first: a clean memstore/bluestore umount needs the mon less than it needs the time
  for f in "$DIR"/run/osd.*.pid "$DIR"/run/mgr.*.pid "$DIR"/run/mon.*.pid; do
    [[ -s $f ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$CONF"; then
      kill -TERM "$pid" && pids+=("$pid")
      if [[ $f == *osd.* ]]; then
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; log "killed -9 $pid"; }
  done
  rm -f "$DIR"/run/*.pid
  log "stopped ${pids[*]:-nothing}"
}

write_conf() {
  local v2=${CEPH_DEV_MON_PORT:-3300} ports=${CEPH_DEV_OSD_PORTS:-6800-6899} store_conf
  local v1=$((v2 + 1))
  case ${CEPH_DEV_STORE:-memstore} in
    memstore) store_conf="osd_objectstore = memstore
memstore_device_bytes = 2147483648
# memstore persists only on a clean umount, which pacific's fast shutdown skips
osd_fast_shutdown = false" ;;
    bluestore) store_conf="osd_objectstore = bluestore
# outside osd_data: a block file inside it makes bluestore hit ELOOP
bluestore_block_path = $DIR/osd.block
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_fsck_on_mkfs = false
bdev_enable_discard = false
bluestore_cache_autotune = false
bluestore_cache_size = 134217728" ;;
    *) echo "CEPH_DEV_STORE must be memstore or bluestore" >&2; exit 2 ;;
  esac
  cat >"$CONF" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon_host = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
public_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_port_min = ${ports%-*}
ms_bind_port_max = ${ports#*-}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid
log_file = $DIR/log/\$name.log
log_to_stderr = false
mon_cluster_log_file = $DIR/log/cluster.log
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
# test machines run with little free disk; the mon would refuse writes otherwise
mon_data_avail_warn = 2
mon_data_avail_crit = 1
mon_max_pg_per_osd = 1000

[client]
# only clients: daemons that see the admin keyring fail cephx
keyring = $KEYRING
# concurrent clients would all try to bind client.admin.asok
admin_socket =

[mon]
mon_data = $DIR/mon/\$cluster-\$id
# commit map changes in 50 ms instead of batching for 1 s
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[mgr]
mgr_data = $DIR/mgr/\$cluster-\$id
# no Python modules (see the header); an empty dir, not a missing one
mgr_module_path = $DIR/mgr/modules
mgr_initial_modules =
mgr_tick_period = 1
# clients (tcmu-runner's service status among them) report every second, not 5
mgr_stats_period = 1

[osd]
osd_data = $DIR/osd/\$cluster-\$id
$store_conf
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
CONF
}

up() {
  mkdir -p "$DIR"/{run,log,mon,mgr/modules,osd,crash}
  [[ -s $CONF ]] || write_conf
  local monhost v2 v1
  monhost=$(awk -F' = ' '$1=="mon_host"{print $2}' "$CONF")
  v2=$(sed -E 's/.*v2:127\.0\.0\.1:([0-9]+).*/\1/' <<<"$monhost")
  v1=$(sed -E 's/.*v1:127\.0\.0\.1:([0-9]+).*/\1/' <<<"$monhost")

  if [[ ! -s $KEYRING ]]; then
    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$KEYRING" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$KEYRING" >/dev/null
    # the mgr's key goes in with the mon's mkfs: no CLI round trip at start-up
    mkdir -p "$DIR/mgr/ceph-x"
    ceph-authtool --create-keyring "$DIR/mgr/ceph-x/keyring" --gen-key -n mgr.x \
      --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/mgr/ceph-x/keyring" >/dev/null
    chmod 600 "$DIR/mon.keyring" "$KEYRING"
  fi

  if [[ ! -e $DIR/mon/ceph-a/done ]]; then
    rm -rf "$DIR/mon/ceph-a"
    monmaptool --create --clobber --fsid "$(awk -F' = ' '$1=="fsid"{print $2}' "$CONF")" \
      --addv a "[v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]" "$DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
    touch "$DIR/mon/ceph-a/done"
  fi
  if ! running "$DIR/run/mon.a.pid"; then
    for p in "$v2" "$v1"; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "127.0.0.1:$p is already in use (another cluster?): set CEPH_DEV_MON_PORT" >&2
        exit 1
      fi
    done
    ceph-mon -c "$CONF" -i a 2>>"$DIR/log/mon.a.stderr"
    log "mon started on 127.0.0.1:$v2"
  fi
  retry 60 "${CEPH[@]}" mon stat

  if [[ ! -s $DIR/mgr/ceph-x/keyring ]]; then # a DIR made before the cluster had a mgr
    mkdir -p "$DIR/mgr/ceph-x"
    "${CEPH[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
      >"$DIR/mgr/ceph-x/keyring.new"
    mv "$DIR/mgr/ceph-x/keyring.new" "$DIR/mgr/ceph-x/keyring"
  fi
  if ! running "$DIR/run/mgr.x.pid"; then
    ceph-mgr -c "$CONF" -i x 2>>"$DIR/log/mgr.x.stderr"
    log "mgr started"
  fi

  if [[ ! -e $DIR/osd/ceph-0/done ]]; then
    rm -rf "$DIR/osd/ceph-0"; mkdir -p "$DIR/osd/ceph-0"
    local uuid secret id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    secret=$(ceph-authtool --gen-print-key)
    printf '{"cephx_secret": "%s"}' "$secret" >"$DIR/osd.0.json"
    # an interrupted earlier run may have left a half-made osd.0 behind
    if "${CEPH[@]}" osd ls | grep -qx 0; then
      "${CEPH[@]}" osd purge 0 --yes-i-really-mean-it >/dev/null 2>&1 || true
      "${CEPH[@]}" auth rm osd.0 >/dev/null 2>&1 || true
    fi
    id=$("${CEPH[@]}" osd new "$uuid" 0 -i "$DIR/osd.0.json")
    rm -f "$DIR/osd.0.json"
    [[ $id == 0 ]] || { echo "unexpected osd id '$id'" >&2; exit 1; }
    ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" --name osd.0 --add-key "$secret" >/dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd.0.mkfs" 2>&1 ||
      { echo "osd mkfs failed, see $DIR/log/osd.0.mkfs" >&2; exit 1; }
    touch "$DIR/osd/ceph-0/done"
  fi
  if ! running "$DIR/run/osd.0.pid"; then
    ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.0.stderr"
    log "osd started"
  fi

  local pool=${CEPH_DEV_POOL:-rbd}
  if [[ ! -e $DIR/pool.done ]]; then
    retry 60 bash -c "${CEPH[*]} osd dump -f json | grep -q '\"up\":1'"
    "${CEPH[@]}" osd pool create "$pool" 8 8 replicated >/dev/null 2>&1 || true
    # application enable + librbd's one-time pool check, so the first `rbd create` is fast
    rbd -c "$CONF" -k "$KEYRING" pool init "$pool"
    # the mgr's always-on Python modules are not loaded on purpose (see the header); the
    # VM guest restarts this cluster's mon and OSD without the mgr
    "${CEPH[@]}" health mute MGR_MODULE_ERROR --sticky >/dev/null 2>&1 || true
    "${CEPH[@]}" health mute MGR_DOWN --sticky >/dev/null 2>&1 || true
    touch "$DIR/pool.done"
    log "pool $pool initialised"
  fi
  # usable once the pool's PGs are active: a write in a private namespace proves it
  retry 120 timeout 20 rados -c "$CONF" -k "$KEYRING" -p "$pool" -N ceph-cluster put ready /dev/null
  # the mgr answers its commands once the mon map names it active
  retry 60 bash -c "${CEPH[*]} mgr stat -f json | grep -q '\"available\": *true'"
  log "ready"
  echo "CEPH_CONF=$CONF"
  echo "CEPH_KEYRING=$KEYRING"
}

case $CMD in
  up) up ;;
  down) down; [[ ${3:-} == --purge ]] && rm -rf "$DIR"; exit 0 ;;
  status) running "$DIR/run/mon.a.pid" && running "$DIR/run/mgr.x.pid" && running "$DIR/run/osd.0.pid" && echo running || { echo stopped; exit 1; } ;;
  *) usage ;;
esac
