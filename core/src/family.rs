//! The two model families this crate holds: one-bar melodies (MeasureVAE over a music
//! dataset) and images (the convolutional VAE over dSprites or Morpho-MNIST). A command asks
//! once which family its dataset or checkpoint belongs to, then hands over to that family's
//! code; see `docs/architecture.md`, "Model families".

use std::io::Read;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::data::images::dataset::IMAGE_MAGIC;
use crate::image_model::CONV_VAE_KIND;
use crate::music_model::MEASURE_VAE_KIND;

/// A model family: its dataset format and its checkpoints' model kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// One-bar melodies: `Dataset` files and `measure_vae` checkpoints.
    Music,
    /// Images: `ImageDataset` files and `conv_vae` checkpoints.
    Images,
}

impl Family {
    /// What its datasets hold: "melodies" or "images".
    pub fn noun(self) -> &'static str {
        match self {
            Family::Music => "melodies",
            Family::Images => "images",
        }
    }

    /// "a music dataset" or "an image dataset".
    pub fn dataset(self) -> &'static str {
        match self {
            Family::Music => "a music dataset",
            Family::Images => "an image dataset",
        }
    }

    /// The family of a dataset file, from its first bytes. A file that is not there or can't
    /// be read counts as music, whose loader then names the problem.
    pub fn of_dataset(path: &Path) -> Family {
        let mut head = [0u8; 7];
        if !path.is_file() {
            return Family::Music; // a FIFO would block the open
        }
        let image = std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|_| head == IMAGE_MAGIC[..7]);
        if image {
            Family::Images
        } else {
            Family::Music
        }
    }

    /// The family of a checkpoint's model, `None` for a model of neither (the
    /// content-preservation classifier, an unknown kind).
    pub fn of_checkpoint(ck: &Checkpoint) -> Option<Family> {
        match ck.meta.model_kind.as_str() {
            MEASURE_VAE_KIND => Some(Family::Music),
            CONV_VAE_KIND => Some(Family::Images),
            _ => None,
        }
    }

    /// The family of a checkpoint used with a dataset, or an error naming both files when
    /// they belong to different families.
    pub fn of_pair(ck: &Checkpoint, ck_path: &Path, data: &Path) -> Result<Family, String> {
        let family = Family::of_dataset(data);
        if Family::of_checkpoint(ck) != Some(family) {
            let model = Family::of_checkpoint(ck).map_or("neither", |f| f.noun());
            return Err(format!(
                "{} is {}, but {} is a {:?} checkpoint, a model of {model} (train one on \
                 this dataset)",
                data.display(),
                family.dataset(),
                ck_path.display(),
                ck.meta.model_kind,
            ));
        }
        Ok(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music_model::MeasureVaeConfig;

    #[test]
    fn datasets_and_checkpoints_name_their_family() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("i.arvae");
        let mut bytes = IMAGE_MAGIC.to_vec();
        bytes.extend([0u8; 32]);
        std::fs::write(&image, bytes).unwrap();
        let music = dir.path().join("m.arvae");
        std::fs::write(&music, b"not an image file").unwrap();
        assert_eq!(Family::of_dataset(&image), Family::Images);
        assert_eq!(Family::of_dataset(&music), Family::Music);
        assert_eq!(
            Family::of_dataset(&dir.path().join("missing")),
            Family::Music
        );

        let mut ck = Checkpoint::untrained(&MeasureVaeConfig::default(), 1);
        assert_eq!(Family::of_checkpoint(&ck), Some(Family::Music));
        let p = Path::new("m.safetensors");
        assert_eq!(Family::of_pair(&ck, p, &music), Ok(Family::Music));
        let e = Family::of_pair(&ck, p, &image).unwrap_err();
        assert!(e.contains("i.arvae is an image dataset"), "{e}");
        assert!(
            e.contains("m.safetensors is a \"measure_vae\" checkpoint"),
            "{e}"
        );
        assert!(e.contains("a model of melodies"), "{e}");
        ck.meta.model_kind = "image_classifier".into();
        assert_eq!(Family::of_checkpoint(&ck), None);
        assert!(Family::of_pair(&ck, p, &music).is_err());
    }
}
