package lio

import "strings"

// statsDefaults are the statistics files the kernel creates with an object
// (all counters zero), for the counters ReadStatistics reads: tests and
// benchmarks fill them as I/O would. Values follow
// /work/shared/reference/upstream-configfs-values-loggedin.txt.
func statsDefaults(rel string) map[string]string {
	switch classify(rel) {
	case kindSO:
		return map[string]string{
			"statistics/scsi_lu/num_cmds":     "0",
			"statistics/scsi_lu/read_mbytes":  "0",
			"statistics/scsi_lu/write_mbytes": "0",
		}
	case kindTarget:
		return map[string]string{
			"fabric_statistics/iscsi_instance/sessions":           "0",
			"fabric_statistics/iscsi_login_stats/accepts":         "0",
			"fabric_statistics/iscsi_logout_stats/normal_logouts": "0",
		}
	case kindLUN:
		return map[string]string{
			"statistics/scsi_tgt_port/in_cmds":      "0",
			"statistics/scsi_tgt_port/hs_in_cmds":   "0",
			"statistics/scsi_tgt_port/read_mbytes":  "0",
			"statistics/scsi_tgt_port/write_mbytes": "0",
			"statistics/scsi_port/busy_count":       "0",
		}
	case kindACL:
		initiator := rel[strings.LastIndexByte(rel, '/')+1:]
		return map[string]string{
			// lio_target_nacl_info_show without a session
			"info": "No active iSCSI Session for Initiator Endpoint: " + initiator,
		}
	case kindMappedLUN:
		return map[string]string{
			"statistics/scsi_auth_intr/num_cmds":     "0",
			"statistics/scsi_auth_intr/hs_num_cmds":  "0",
			"statistics/scsi_auth_intr/read_mbytes":  "0",
			"statistics/scsi_auth_intr/write_mbytes": "0",
			"statistics/scsi_auth_intr/att_count":    "0",
		}
	}
	return nil
}
