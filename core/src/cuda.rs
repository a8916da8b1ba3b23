//! Is CUDA usable on this machine? Asked before candle touches CUDA.
//!
//! The CUDA build of `scripts/build-cuda.sh` has cudarc open the driver (libcuda) and the CUDA
//! libraries (cuBLAS, cuRAND) with `dlopen` on first use, so the same binary starts and trains
//! on the CPU where they are absent; but cudarc panics when one of them is missing. [`probe`]
//! looks for the same files under the same names first (cudarc's `get_lib_name_candidates`),
//! then asks the driver for its CUDA version and a GPU, and names what is missing. In a plain
//! `--features cuda` build (cudarc linked against the libraries) it finds them all, since the
//! binary could not have started otherwise. Without the `cuda` feature it answers
//! [`Unavailable::NotBuilt`]. The names and messages are plain code, tested in every build.

use std::fmt;

/// The CUDA version the kernels and cudarc were built for: `CUDARC_CUDA_VERSION` at build time
/// (cudarc's own override, e.g. `13000`; scripts/build-cuda.sh sets it), else 13.0.
pub fn build_cuda_version() -> (u32, u32) {
    parse_cudarc_version(option_env!("CUDARC_CUDA_VERSION")).unwrap_or((13, 0))
}

/// `"13000"` -> (13, 0), `"12090"` -> (12, 9): cudarc's `{major}0{minor}0`.
fn parse_cudarc_version(s: Option<&str>) -> Option<(u32, u32)> {
    let n: u32 = s?.trim().parse().ok()?;
    (n >= 1000).then_some((n / 1000, (n % 1000) / 10))
}

/// The file names cudarc 0.19 tries, in its order, for library `lib` (e.g. `"cublas"`) of a
/// build for CUDA `major.minor` (its `get_lib_name_candidates`).
pub fn lib_name_candidates(lib: &str, (major, minor): (u32, u32)) -> Vec<String> {
    use std::env::consts::{DLL_PREFIX as P, DLL_SUFFIX as S};
    let w = if cfg!(target_pointer_width = "32") {
        "32"
    } else {
        "64"
    };
    vec![
        format!("{P}{lib}{S}"),
        format!("{P}{lib}{w}{S}"),
        format!("{P}{lib}{w}_{major}{S}"),
        format!("{P}{lib}{w}_{major}{minor}{S}"),
        format!("{P}{lib}{w}_{major}{minor}_0{S}"),
        format!("{P}{lib}{w}_{major}0_{minor}{S}"),
        format!("{P}{lib}{w}_10{S}"),
        format!("{P}{lib}{w}_11{S}"),
        format!("{P}{lib}{w}_12{S}"),
        format!("{P}{lib}{w}_{major}0_0{S}"),
        format!("{P}{lib}{w}_9{S}"),
        format!("{P}{lib}{S}.{major}"),
        format!("{P}{lib}{S}.12"),
        format!("{P}{lib}{S}.11"),
        format!("{P}{lib}{S}.10"),
        format!("{P}{lib}{S}.9"),
        format!("{P}{lib}{S}.1"),
    ]
}

/// A shared library candle's CUDA backend has cudarc open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaLibrary {
    /// What it is, for people: "the NVIDIA driver", "cuBLAS".
    pub what: &'static str,
    /// cudarc's library names (all their candidates are tried).
    pub names: &'static [&'static str],
    /// The usual file on Linux, for messages ("libcublas.so.13"); `{}` is the CUDA major.
    pub file: &'static str,
    /// Comes with the NVIDIA driver rather than the CUDA toolkit.
    pub driver: bool,
}

impl CudaLibrary {
    /// The usual file name for a build for CUDA `major`.
    pub fn file_for(&self, major: u32) -> String {
        self.file.replace("{}", &major.to_string())
    }
}

/// Driver first, then what `candle_core::Device::new_cuda` opens: cuBLAS (which needs cuBLASLt)
/// and cuRAND. candle's kernels are PTX loaded by the driver, so NVRTC is never opened.
pub const LIBRARIES: [CudaLibrary; 4] = [
    CudaLibrary {
        what: "the NVIDIA driver",
        names: &["cuda", "nvcuda"],
        file: "libcuda.so.1",
        driver: true,
    },
    CudaLibrary {
        what: "cuBLASLt",
        names: &["cublasLt"],
        file: "libcublasLt.so.{}",
        driver: false,
    },
    CudaLibrary {
        what: "cuBLAS",
        names: &["cublas"],
        file: "libcublas.so.{}",
        driver: false,
    },
    CudaLibrary {
        what: "cuRAND",
        names: &["curand"],
        file: "libcurand.so.10",
        driver: false,
    },
];

/// The GPU [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaInfo {
    /// The CUDA version the driver supports (580 series: 13.0).
    pub driver: (u32, u32),
    /// GPUs the driver sees.
    pub devices: u32,
    /// Name of GPU 0.
    pub name: String,
}

impl fmt::Display for CudaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CUDA GPU 0 of {}: {} (driver for CUDA {}.{})",
            self.devices, self.name, self.driver.0, self.driver.1
        )
    }
}

/// Why CUDA cannot be used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Built without the `cuda` feature.
    NotBuilt,
    /// Libraries not found under any name cudarc tries.
    Missing {
        libraries: Vec<CudaLibrary>,
        /// The CUDA major version of the build (for the file names).
        major: u32,
    },
    /// The driver is older than the CUDA version of the build (its PTX would not load).
    OldDriver {
        driver: (u32, u32),
        built: (u32, u32),
    },
    /// A driver call failed (`cuInit` with CUDA_ERROR_NO_DEVICE where there is no GPU).
    Driver {
        call: &'static str,
        code: i32,
        name: String,
    },
    /// The driver has no entry point cudarc needs (a very old or broken libcuda).
    Symbol { name: &'static str, error: String },
    /// The driver works but sees no GPU.
    NoGpu,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotBuilt => write!(
                f,
                "this build has no CUDA support: rebuild with scripts/build-cuda.sh (`--features cuda`)"
            ),
            Unavailable::Missing { libraries, major } => {
                let list: Vec<String> = libraries
                    .iter()
                    .map(|l| format!("{} ({})", l.what, l.file_for(*major)))
                    .collect();
                write!(
                    f,
                    "missing {}: none of the names cudarc loads is on the library path",
                    list.join(", ")
                )?;
                if libraries.iter().any(|l| l.driver) {
                    write!(
                        f,
                        "; no NVIDIA driver is installed (this build needs one for CUDA {major}{})",
                        if *major == 13 {
                            ": the 580 series or newer"
                        } else {
                            ""
                        }
                    )?;
                }
                if libraries.iter().any(|l| !l.driver) {
                    write!(
                        f,
                        "; put the folder holding the CUDA {major} libraries on LD_LIBRARY_PATH \
                         (the build's own: eval \"$(scripts/build-cuda.sh --print-env)\")"
                    )?;
                }
                Ok(())
            }
            Unavailable::OldDriver { driver, built } => {
                write!(
                    f,
                    "the NVIDIA driver supports CUDA {}.{}, but this build's kernels need CUDA {}.{} or newer: update the driver",
                    driver.0, driver.1, built.0, built.1
                )?;
                if driver.0 == built.0 {
                    write!(
                        f,
                        ", or rebuild with scripts/build-cuda.sh --cuda-version {}.{}.x",
                        driver.0, driver.1
                    )?;
                }
                Ok(())
            }
            Unavailable::Driver { call, code, name } => {
                write!(f, "the NVIDIA driver cannot be used: {call} returned {name} ({code})")?;
                if *code == 100 {
                    write!(f, ": no CUDA GPU in this machine")?;
                }
                Ok(())
            }
            Unavailable::Symbol { name, error } => {
                write!(f, "the NVIDIA driver has no {name} ({error})")
            }
            Unavailable::NoGpu => write!(f, "the NVIDIA driver sees no GPU"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Checks that CUDA GPU 0 can be opened by candle without cudarc panicking: every library of
/// [`LIBRARIES`] loads, the driver is new enough for the build and sees a GPU.
#[cfg(not(feature = "cuda"))]
pub fn probe() -> Result<CudaInfo, Unavailable> {
    Err(Unavailable::NotBuilt)
}

/// Checks that CUDA GPU 0 can be opened by candle without cudarc panicking: every library of
/// [`LIBRARIES`] loads, the driver is new enough for the build and sees a GPU.
#[cfg(feature = "cuda")]
pub fn probe() -> Result<CudaInfo, Unavailable> {
    let built = build_cuda_version();
    let mut missing = Vec::new();
    let mut driver = None;
    for lib in LIBRARIES {
        match open(&lib, built) {
            Some(l) if lib.driver => driver = Some(l),
            Some(_) => {} // closed again; cudarc opens it itself
            None => missing.push(lib),
        }
    }
    match driver {
        Some(d) if missing.is_empty() => {
            // Kept loaded: cuInit starts the driver's threads, which must not lose their code
            // (cudarc's own dlopen of the same file shares this one).
            let d: &'static libloading::Library = Box::leak(Box::new(d));
            ask_driver(d, built)
        }
        _ => Err(Unavailable::Missing {
            libraries: missing,
            major: built.0,
        }),
    }
}

#[cfg(feature = "cuda")]
fn open(lib: &CudaLibrary, built: (u32, u32)) -> Option<libloading::Library> {
    lib.names
        .iter()
        .flat_map(|n| lib_name_candidates(n, built))
        // SAFETY: loading runs the library's initialisers; these are NVIDIA's libraries, which
        // cudarc loads under exactly these names anyway.
        .find_map(|name| unsafe { libloading::Library::new(name) }.ok())
}

#[cfg(feature = "cuda")]
fn ask_driver(lib: &libloading::Library, built: (u32, u32)) -> Result<CudaInfo, Unavailable> {
    use std::ffi::{c_char, c_int, c_uint, CStr};
    // The CUDA driver API (cuda.h): CUresult and CUdevice are C ints.
    type Status = c_int;
    fn sym<T: Copy>(lib: &libloading::Library, name: &'static str) -> Result<T, Unavailable> {
        // SAFETY: every `T` below is the entry point's signature in cuda.h.
        unsafe { lib.get::<T>(name) }
            .map(|s| *s)
            .map_err(|e| Unavailable::Symbol {
                name,
                error: e.to_string(),
            })
    }
    let version: unsafe extern "C" fn(*mut c_int) -> Status = sym(lib, "cuDriverGetVersion")?;
    let init: unsafe extern "C" fn(c_uint) -> Status = sym(lib, "cuInit")?;
    let count: unsafe extern "C" fn(*mut c_int) -> Status = sym(lib, "cuDeviceGetCount")?;
    let get: unsafe extern "C" fn(*mut c_int, c_int) -> Status = sym(lib, "cuDeviceGet")?;
    let name_of: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> Status =
        sym(lib, "cuDeviceGetName")?;
    let error_name: unsafe extern "C" fn(Status, *mut *const c_char) -> Status =
        sym(lib, "cuGetErrorName")?;
    // SAFETY (every call below): cuda.h's contracts; out-pointers point to live locals, the name
    // buffer is 256 bytes and the driver writes at most the 255 we pass, NUL-terminated; the
    // error-name string is static in the driver.
    let fail = |call: &'static str, code: Status| {
        let mut p: *const c_char = std::ptr::null();
        let name = if unsafe { error_name(code, &mut p) } == 0 && !p.is_null() {
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        } else {
            "an unknown error".to_string()
        };
        Unavailable::Driver { call, code, name }
    };
    let mut v: c_int = 0;
    let r = unsafe { version(&mut v) };
    if r != 0 {
        return Err(fail("cuDriverGetVersion", r));
    }
    let v = v.max(0) as u32;
    let driver = (v / 1000, (v % 1000) / 10);
    if driver < built {
        return Err(Unavailable::OldDriver { driver, built });
    }
    let r = unsafe { init(0) };
    if r != 0 {
        return Err(fail("cuInit", r));
    }
    let mut n: c_int = 0;
    let r = unsafe { count(&mut n) };
    if r != 0 {
        return Err(fail("cuDeviceGetCount", r));
    }
    if n < 1 {
        return Err(Unavailable::NoGpu);
    }
    let mut dev: c_int = 0;
    let mut buf = [0 as c_char; 256];
    let name = if unsafe { get(&mut dev, 0) } == 0
        && unsafe { name_of(buf.as_mut_ptr(), 255, dev) } == 0
    {
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        "unnamed".to_string()
    };
    Ok(CudaInfo {
        driver,
        devices: n as u32,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cudarc_version_strings() {
        assert_eq!(parse_cudarc_version(Some("13000")), Some((13, 0)));
        assert_eq!(parse_cudarc_version(Some("12090")), Some((12, 9)));
        assert_eq!(parse_cudarc_version(Some("13.0")), None);
        assert_eq!(parse_cudarc_version(None), None);
        let (major, _) = build_cuda_version();
        assert!(major >= 11);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_names_cudarc_tries() {
        let c = lib_name_candidates("cublas", (13, 0));
        assert_eq!(c.len(), 17);
        assert_eq!(c[0], "libcublas.so");
        assert_eq!(c[3], "libcublas64_130.so");
        for so in ["libcublas.so.13", "libcublas.so.12", "libcublas.so.10"] {
            assert!(c.iter().any(|n| n == so), "{so}");
        }
        // Each library's usual file is one of the names tried (the driver's .so.1, cuRAND's .10).
        for lib in LIBRARIES {
            let file = lib.file_for(13);
            assert!(
                lib.names
                    .iter()
                    .flat_map(|n| lib_name_candidates(n, (13, 0)))
                    .any(|n| n == file),
                "{file}"
            );
        }
    }

    #[test]
    fn messages_name_what_is_missing() {
        let m = Unavailable::Missing {
            libraries: vec![LIBRARIES[0], LIBRARIES[2]],
            major: 13,
        }
        .to_string();
        assert!(m.contains("the NVIDIA driver (libcuda.so.1)"), "{m}");
        assert!(m.contains("cuBLAS (libcublas.so.13)"), "{m}");
        assert!(m.contains("no NVIDIA driver is installed"), "{m}");
        assert!(m.contains("LD_LIBRARY_PATH"), "{m}");
        let only_driver = Unavailable::Missing {
            libraries: vec![LIBRARIES[0]],
            major: 13,
        }
        .to_string();
        assert!(!only_driver.contains("LD_LIBRARY_PATH"), "{only_driver}");
        let old = Unavailable::OldDriver {
            driver: (12, 4),
            built: (13, 0),
        }
        .to_string();
        assert!(
            old.contains("supports CUDA 12.4") && old.contains("13.0 or newer"),
            "{old}"
        );
        assert!(
            !old.contains("--cuda-version"),
            "no CUDA 12 nvcc on PyPI: {old}"
        );
        let minor = Unavailable::OldDriver {
            driver: (13, 0),
            built: (13, 2),
        }
        .to_string();
        assert!(minor.contains("--cuda-version 13.0.x"), "{minor}");
        let none = Unavailable::Driver {
            call: "cuInit",
            code: 100,
            name: "CUDA_ERROR_NO_DEVICE".into(),
        }
        .to_string();
        assert!(none.contains("no CUDA GPU"), "{none}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_cuda_is_not_built() {
        assert_eq!(probe(), Err(Unavailable::NotBuilt));
    }
}
