//! Named parameters between checkpoints and candle variables, for every model kind: the
//! shape contract (`*_shapes` in `music_model.rs` / `image_model.rs`) checked once, here.

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;

use crate::checkpoint::NamedTensors;

/// A `VarMap` holding one variable per `(name, shape)` of `shapes`, with its values from
/// `tensors` on `device`; a missing parameter or one of another shape is an error naming it.
pub fn varmap_from_tensors(
    shapes: Vec<(String, Vec<usize>)>,
    tensors: &NamedTensors,
    device: &Device,
) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("fresh varmap");
        for (name, shape) in shapes {
            let Some((s, values)) = tensors.get(&name) else {
                candle_core::bail!("missing parameter {name}");
            };
            if *s != shape || values.len() != shape.iter().product::<usize>() {
                candle_core::bail!("parameter {name} has shape {s:?}, expected {shape:?}");
            }
            let t = Tensor::from_slice(values, shape, &Device::Cpu)?.to_device(device)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// The variables of `varmap` named in `shapes`, in that (checkpoint) order.
pub fn named_vars(varmap: &VarMap, shapes: Vec<(String, Vec<usize>)>) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    shapes
        .into_iter()
        .map(|(n, _)| {
            let v = data[&n].clone();
            (n, v)
        })
        .collect()
}

/// Each variable's current values, copied to the CPU, by name.
pub fn tensors_of(vars: Vec<(String, Var)>) -> Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for (name, var) in vars {
        let t = var.as_tensor();
        let values = t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        out.insert(name, (t.dims().to_vec(), values));
    }
    Ok(out)
}

/// Every variable of `varmap` as a plain tensor by name, for a model that reads its weights
/// by name.
pub fn tensor_table(varmap: &VarMap) -> std::collections::BTreeMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<(String, Vec<usize>)> {
        vec![("b".into(), vec![2]), ("a".into(), vec![1, 3])]
    }

    #[test]
    fn values_round_trip_in_shape_order() {
        let mut t = NamedTensors::new();
        t.insert("a".into(), (vec![1, 3], vec![1.0, 2.0, 3.0]));
        t.insert("b".into(), (vec![2], vec![-1.0, 0.5]));
        let vm = varmap_from_tensors(shapes(), &t, &Device::Cpu).unwrap();
        let vars = named_vars(&vm, shapes());
        assert_eq!(vars[0].0, "b");
        assert_eq!(vars[1].0, "a");
        assert_eq!(tensors_of(vars).unwrap(), t);
    }

    #[test]
    fn missing_or_misshapen_parameters_are_named() {
        let mut t = NamedTensors::new();
        t.insert("b".into(), (vec![2], vec![0.0, 0.0]));
        let e = varmap_from_tensors(shapes(), &t, &Device::Cpu)
            .err()
            .expect("an error");
        assert!(e.to_string().contains("missing parameter a"), "{e}");
        t.insert("a".into(), (vec![3, 1], vec![0.0; 3]));
        let e = varmap_from_tensors(shapes(), &t, &Device::Cpu)
            .err()
            .expect("an error");
        assert!(
            e.to_string()
                .contains("parameter a has shape [3, 1], expected [1, 3]"),
            "{e}"
        );
    }
}
