//! Image models end to end: a small dSprites set from our renderer, an AR-VAE and a β-VAE
//! trained for one epoch, and `traverse` grids for both.

mod common;

use common::{dsprites_dataset, fails, ok, png_size, s};

#[test]
fn image_traversal_grids_for_ar_vae_and_beta_vae() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dsprites.arvae");
    // Every 4099th of the 737,280 frames: ~180 images over all five factors.
    dsprites_dataset(&data, 4099);
    let ar = dir.path().join("ar");
    let beta = dir.path().join("beta");
    for (model, out) in [("ar-vae", &ar), ("beta-vae", &beta)] {
        ok(&[
            "train",
            "--data",
            s(&data),
            "--model",
            model,
            "--out",
            s(out),
            "--epochs",
            "1",
        ]);
    }
    for (run, how) in [(&ar, "regularized"), (&beta, "highest MI")] {
        let out = run.join("traverse");
        let text = ok(&[
            "traverse",
            "--checkpoint",
            s(&run.join("best.safetensors")),
            "--data",
            s(&data),
            "--count",
            "3",
            "--steps",
            "4",
            "--out",
            s(&out),
        ]);
        assert!(text.contains("5 grids (3 images x 6 columns)"), "{text}");
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("traverse.json")).unwrap())
                .unwrap();
        assert_eq!(index["images"].as_array().unwrap().len(), 3);
        let z: Vec<f64> = index["z"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = [-4.0, -4.0 / 3.0, 4.0 / 3.0, 4.0];
        assert!(
            z.len() == 4 && z.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{z:?}"
        );
        let axes = index["axes"].as_array().unwrap();
        let names: Vec<&str> = axes
            .iter()
            .map(|a| a["attribute"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shape", "scale", "orientation", "pos_x", "pos_y"]);
        for axis in axes {
            assert_eq!(axis["how"], how);
            // 64-pixel images at 1x: 8 + 6 x (64 + 4) + 8 wide; header 56, 3 rows of 68, 8.
            assert_eq!(
                png_size(&out.join(axis["figure"].as_str().unwrap())),
                (424, 56 + 3 * 68 + 8)
            );
        }
        if how == "regularized" {
            let dims: Vec<u64> = axes.iter().map(|a| a["dim"].as_u64().unwrap()).collect();
            assert_eq!(dims, [0, 1, 2, 3, 4]);
        }
    }

    // Content preservation: a shape classifier, then its accuracy on inputs, reconstructions
    // and traversals of both models.
    let cls = dir.path().join("cls.safetensors");
    let text = ok(&[
        "classify-train",
        "--data",
        s(&data),
        "--out",
        s(&cls),
        "--epochs",
        "1",
    ]);
    assert!(text.contains("3-class classifier (shape)"), "{text}");
    assert!(text.contains("test accuracy"), "{text}");
    let e = fails(&["classify-train", "--data", s(&data), "--out", s(&cls)]);
    assert!(e.contains("--force"), "{e}");
    for run in [&ar, &beta] {
        let json = run.join("content.json");
        let text = ok(&[
            "eval",
            "--checkpoint",
            s(&run.join("best.safetensors")),
            "--data",
            s(&data),
            "--content",
            s(&cls),
            "--content-images",
            "7",
            "--content-steps",
            "3",
            "--json",
            s(&json),
        ]);
        assert!(
            text.contains("content preservation (shape classifier, 7 images, 3 points"),
            "{text}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let c = &v["content"];
        assert_eq!(c["images"], 7);
        let axes = c["axes"].as_array().unwrap();
        assert_eq!(axes.len(), 5);
        let mut mean = 0.0;
        for a in axes {
            let per: Vec<f64> = a["per_step"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(per.len(), 3);
            // Each point is a count out of 7 images; the axis is their mean.
            for p in &per {
                assert!(((p * 7.0).round() - p * 7.0).abs() < 1e-9, "{p}");
            }
            let acc = a["accuracy"].as_f64().unwrap();
            assert!((acc - per.iter().sum::<f64>() / 3.0).abs() < 1e-9);
            mean += acc / 5.0;
        }
        assert!((c["traversals"].as_f64().unwrap() - mean).abs() < 1e-9);
    }
    // A VAE is not a classifier; a classifier is not a VAE.
    let e = fails(&[
        "eval",
        "--checkpoint",
        s(&ar.join("best.safetensors")),
        "--data",
        s(&data),
        "--content",
        s(&ar.join("best.safetensors")),
    ]);
    assert!(e.contains("not an image classifier"), "{e}");
    let e = fails(&["eval", "--checkpoint", s(&cls), "--data", s(&data)]);
    assert!(e.contains("image_classifier"), "{e}");

    // A music checkpoint on image data, and bad arguments, are refused by name.
    let music = dir.path().join("music.safetensors");
    std::fs::write(&music, arvae_core::builtin::builtin("bach").unwrap().bytes).unwrap();
    let e = fails(&[
        "traverse",
        "--checkpoint",
        s(&music),
        "--data",
        s(&data),
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(
        e.contains("image dataset") && e.contains("measure_vae"),
        "{e}"
    );
    let e = fails(&[
        "traverse",
        "--checkpoint",
        s(&ar.join("best.safetensors")),
        "--data",
        s(&data),
        "--count",
        "0",
        "--out",
        s(&dir.path().join("y")),
    ]);
    assert!(e.contains("--count"), "{e}");
    let e = fails(&[
        "eval",
        "--checkpoint",
        s(&music),
        "--data",
        s(&data),
        "--content",
        s(&cls),
    ]);
    assert!(
        e.contains("is an image dataset") && e.contains("\"measure_vae\" checkpoint"),
        "{e}"
    );
}
