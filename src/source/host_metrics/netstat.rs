//! `netstat`: `node_netstat_<Protocol>_<Name>` from `/proc/net/netstat` and
//! `/proc/net/snmp` (pairs of `Proto: names` / `Proto: values` lines) and
//! `/proc/net/snmp6` (`Ip6InOctets value` lines), the fields node_exporter exports by
//! default (`netstat_linux.go`'s `--collector.netstat.fields`), as counters or gauges
//! (node_exporter leaves them untyped). A missing `snmp6` (IPv6 off) is skipped.

use std::sync::OnceLock;

use regex::Regex;

use super::{read, Collected, Emitter, Roots};

/// node_exporter 1.x's default `--collector.netstat.fields`.
const FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

fn fields() -> &'static Regex {
    static FIELDS_RE: OnceLock<Regex> = OnceLock::new();
    FIELDS_RE.get_or_init(|| Regex::new(FIELDS).expect("a valid pattern"))
}

/// Reads the three files.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let mut stats: Vec<(String, String)> = Vec::new();
    for file in ["net/netstat", "net/snmp"] {
        let text = read(&roots.proc(file)).ok_or_else(|| failed!("no /proc/{file}"))?;
        let mut lines = text.lines();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let (Some((protocol, names)), Some((_, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                return Err(failed!("malformed /proc/{file}"));
            };
            let names = names.split_ascii_whitespace();
            for (name, value) in names.zip(values.split_ascii_whitespace()) {
                stats.push((format!("{protocol}_{name}"), value.to_owned()));
            }
        }
    }
    if let Some(text) = read(&roots.proc("net/snmp6")) {
        for line in text.lines() {
            let mut columns = line.split_ascii_whitespace();
            let (Some(key), Some(value)) = (columns.next(), columns.next()) else {
                continue;
            };
            if let Some(six) = key.find('6') {
                let (protocol, name) = key.split_at(six + 1);
                stats.push((format!("{protocol}_{name}"), value.to_owned()));
            }
        }
    }
    for (key, value) in stats {
        if !fields().is_match(&key) {
            continue;
        }
        let value: f64 = value
            .parse()
            .map_err(|_| failed!("invalid value {value:?} for {key}"))?;
        let name = format!("node_netstat_{key}");
        // Levels, not totals: the current connections and whether forwarding is on.
        if key == "Tcp_CurrEstab" || key == "Ip_Forwarding" {
            out.gauge(&name, &[], value);
        } else {
            out.counter(&name, &[], value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_the_default_fields_of_the_three_files() {
        let lines = run("net", collect).unwrap();
        for expected in [
            "node_netstat_Tcp_ActiveOpens{} counter 1234",
            "node_netstat_Tcp_CurrEstab{} gauge 3",
            "node_netstat_Ip_Forwarding{} gauge 1",
            "node_netstat_IpExt_InOctets{} counter 987654",
            "node_netstat_TcpExt_ListenDrops{} counter 5",
            "node_netstat_Udp_InErrors{} counter 7",
            "node_netstat_UdpLite_InErrors{} counter 0",
            "node_netstat_Ip6_InOctets{} counter 4242",
            "node_netstat_Udp6_NoPorts{} counter 9",
            "node_netstat_Icmp6_InErrors{} counter 0",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected}: {lines:#?}"
            );
        }
        assert!(
            !lines.iter().any(|l| l.contains("Tcp_RtoMin")),
            "not a default field"
        );
        assert!(run("empty", collect).is_err());
    }
}
