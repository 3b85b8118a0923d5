"""Built-in sample Deep Security events, one per module, for ``dsrouter send --sample``.

These are written for dsrouter (host names and addresses are from documentation ranges); their
layout follows what DS sends: an RFC 3164 header without a tag, then the CEF or LEEF body.
"""

from __future__ import annotations

import time

_AGENT = "CEF:0|Trend Micro|Deep Security Agent|20.0.1.690"
_MANAGER = "CEF:0|Trend Micro|Deep Security Manager|20.0.913"
_HOST = (
    "cn1=12 cn1Label=Host ID dvchost=web-01.example.com "
    "TrendMicroDsTenant=Primary TrendMicroDsTenantId=0"
)

BODIES: dict[str, str] = {
    "system": f"{_MANAGER}|600|User Signed In|3|src=192.0.2.20 suser=MasterAdmin "
    "target=MasterAdmin msg=User signed in from 192.0.2.44 "
    "TrendMicroDsTenant=Primary TrendMicroDsTenantId=0",
    "anti_malware": f"{_AGENT}|4000000|Eicar_test_file|6|{_HOST} "
    "filePath=C:\\\\Users\\\\alice\\\\Downloads\\\\eicar.com act=Quarantine result=Quarantined "
    "msg=Realtime TrendMicroDsMalwareTarget=N/A TrendMicroDsMalwareTargetType=N/A "
    "TrendMicroDsFileSHA1=3395856CE81F2B7382DEE72602F798B642F14140",
    "web_reputation": f"{_AGENT}|5000000|WebReputation|5|{_HOST} "
    "request=http://malware.example.net/payload.exe msg=Blocked By Admin",
    "firewall": f"{_AGENT}|21|Out Of Allowed Policy|5|{_HOST} act=Deny dmac=00:50:56:F5:7F:47 "
    "smac=00:0C:29:EB:35:DE TrendMicroDsFrameType=IP src=198.51.100.7 dst=192.0.2.15 out=1019 "
    "cs3=DF 0 cs3Label=Fragmentation Bits proto=TCP spt=49617 dpt=137 cs2=0x00 ACK PSH "
    "cs2Label=TCP Flags cnt=1",
    "intrusion_prevention": f"{_AGENT}|1000552|Generic Cross Site Scripting(XSS) Prevention|8|"
    f"{_HOST} act=Reset dmac=00:50:56:F5:7F:47 smac=00:0C:29:EB:35:DE TrendMicroDsFrameType=IP "
    "src=203.0.113.9 dst=192.0.2.15 in=512 cs3= cs3Label=Fragmentation Bits proto=TCP spt=51234 "
    "dpt=80 cs2=0x00 ACK PSH cs2Label=TCP Flags cnt=1 cs1=XSS_attempt cs1Label=DPI Note "
    "cn3=16 cn3Label=DPI Packet Position cs5=16 cs5Label=DPI Stream Position cs6=0 "
    "cs6Label=DPI Flags",
    "integrity_monitoring": f"{_AGENT}|2002779|Unix - File attributes changed|6|{_HOST} "
    "act=updated filePath=/etc/passwd suser=root sproc=/usr/bin/vi msg=lastModified,sha1,size",
    "log_inspection": f"{_AGENT}|3002795|Default Rule: Multiple SSH authentication failures|8|"
    f"{_HOST} cs1=Multiple authentication failures cs1Label=LI Description fname=/var/log/auth.log "
    "shost=web-01 src=203.0.113.50 duser=root msg=sshd: Failed password for root from "
    "203.0.113.50 port 40022 ssh2",
    "application_control": f"{_AGENT}|6002200|AppControl blocked|6|{_HOST} suser=alice suid=1001 "
    "act=blocked filePath=/tmp/miner fsize=4096 aggregationType=0 repeatCount=1 "
    "cs1=notWhitelisted cs1Label=actionReason "
    "fileHash=80D4AC182F97D2AB48476D8D9A2FAC4C3F0A59FB16208F0E9A6C29D6C5E545E0",
    "device_control": f"{_AGENT}|7001200|Device Control DeviceControl|6|{_HOST} "
    "device=USB Storage processName=explorer.exe fileName=E:\\\\report.xlsx vendor=ExampleCorp "
    "serial=SN-0001 model=Stick deviceType=0 permission=0",
}

LEEF_SYSTEM = (
    "LEEF:2.0|Trend Micro|Deep Security Manager|20.0.913|192|cat=System\tname=Alert Ended\t"
    "desc=Alert: Computer Reboot Required\tsev=3\tsrc=192.0.2.20\tusrName=System\t"
    "target=web-01.example.com\tmsg=Alert: Computer Reboot Required\t"
    "TrendMicroDsTenant=Primary\tTrendMicroDsTenantId=0"
)


def sample_lines(now: float | None = None) -> list[str]:
    """Every sample as a full syslog line stamped with the current local time."""
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now))
    lines = [f"<134>{stamp} dsm01.example.com {body}" for body in BODIES.values()]
    lines.append(f"<134>{stamp} dsm01.example.com {LEEF_SYSTEM}")
    return lines
