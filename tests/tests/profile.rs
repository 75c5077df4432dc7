//! `host profile --qemu --json`, run once as a user would: one QEMU boot,
//! one profiled inference per network, checked against the buffer plans in
//! `shared::nets` (which the firmware runs) and against the firmware's own
//! measurement of the whole pass, and each network's instruction count
//! against its budget.

use shared::nets::plan;
use shared::NetId;
use tests::host_cli;

/// Instructions per inference under QEMU (`-icount shift=0`: an exact
/// count, not a time, and the same for images 0, 1, 7, 1234 and 9999 of
/// the test set, so this test's image stands for all): InceptionNet its
/// target of 5.0 M (today 4,916,174), the identity ResNet its target of
/// 1.1 MAC per instruction (1,830,167 for its 2,013,184 MACs; today
/// 1,765,801), the ResNet 3% above today (1,423,148; its target is 1.5 M).
/// A kernel change that costs 2-4% more fails here, not in a later
/// benchmark. Lower them as the kernels improve.
fn budget(net: NetId) -> u64 {
    match net {
        NetId::Inception => 5_000_000,
        NetId::ResNet => 1_470_000,
        NetId::ResNetIdentity => 1_830_000,
    }
}

#[test]
fn host_profile_reports_every_step_of_every_plan_as_json() {
    let out = host_cli(&["profile", "--qemu", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("{e}: not one JSON object:\n{out}"));
    let nets = v.as_object().expect("a JSON object");
    assert_eq!(nets.len(), NetId::COUNT, "{v}");
    for net in NetId::ALL {
        let p = &v[net.name()];
        let layers = p["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no layers in {p}", net.name()));
        let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
        let plan_names: Vec<&str> = plan(net).steps.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            plan_names,
            "one entry per step of the {} plan, in order",
            net.name()
        );
        let total = p["total"].as_u64().unwrap();
        let sum: u64 = layers
            .iter()
            .map(|l| l["instructions"].as_u64().unwrap())
            .sum();
        assert!(total > 0, "{}: {p}", net.name());
        // As in serial_qemu's profile test: the layers add up to the whole
        // pass within 1%.
        assert!(
            sum.abs_diff(total) * 100 <= total,
            "{}: layers {sum} vs pass {total}",
            net.name()
        );
        assert!(
            total <= budget(net),
            "{}: {total} instructions per inference, over the budget of {}",
            net.name(),
            budget(net)
        );
    }
}
