//! `host profile --qemu --json`, run once as a user would: one QEMU boot,
//! one profiled inference per network, checked against the buffer plans in
//! `shared::nets` (which the firmware runs) and against the firmware's own
//! measurement of the whole pass.

use shared::nets::plan;
use shared::NetId;
use tests::host_cli;

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
    }
}
