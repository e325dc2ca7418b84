//! TF-M Internal Trusted Storage as the firmware configures it: the limits
//! every persistent object (key, certificate, state record) is held to.
//!
//! The numbers come from the TF-M project configuration header the firmware
//! is built with (`tfm-partition/config_tfmprov_<board>.h`, read by
//! `build.rs`), so that a certificate TF-M cannot store is refused here, with
//! its own error, before TF-M sees it. On the host, [`host`] makes the
//! simulator run out of storage where TF-M would.

include!(concat!(env!("OUT_DIR"), "/its_config.rs"));

/// Bytes Mbed TLS's persistent key format adds in front of the key data in
/// the ITS file (`psa_crypto_storage.c`: magic 8, version 4, lifetime 4,
/// type 2, bits 2, policy 12, data length 4).
pub const PSA_KEY_FILE_HEADER_LEN: usize = 36;

/// The largest blob (certificate, state record) that fits one ITS asset.
pub const MAX_BLOB_LEN: usize = ITS_MAX_ASSET_SIZE - PSA_KEY_FILE_HEADER_LEN;

/// Files TF-M itself keeps in ITS next to ours: the crypto service's NV seed.
pub const TFM_OWN_FILES: usize = 1;

/// Size of TF-M's NV seed file (`MBEDTLS_ENTROPY_BLOCK_SIZE`, SHA-512 based).
pub const TFM_NV_SEED_LEN: usize = 64;

/// Host only: the ITS files another secure partition keeps next to the
/// key store (their data sizes): the simulator's tfmprov partition keeps
/// its counters and RNG record in TF-M's ITS, so the model counts them as
/// TF-M would (`tfmprov_device::vault`).
#[cfg(not(target_os = "none"))]
pub fn model_partition_files(sizes: &[usize]) {
    let mut files = host::PARTITION_FILES.lock().unwrap_or_else(|e| e.into_inner());
    files.clear();
    files.extend_from_slice(sizes);
}

/// Bytes of file room per logical data block of TF-M's ITS flash file system
/// (`secure_fw/partitions/internal_trusted_storage/flash_fs`): logical block
/// 0 shares the metadata block, the others are whole blocks.
pub fn data_block_capacities() -> alloc::vec::Vec<usize> {
    let blocks = ITS_AREA_SIZE / ITS_BLOCK_SIZE;
    // Two metadata blocks; with 4 or more blocks one scratch data block.
    let dedicated = if blocks <= 2 { 0 } else { blocks - 3 };
    let metadata = 8 + 12 * (dedicated + 1) + 32 * (ITS_NUM_ASSETS + 1);
    let mut caps = alloc::vec![ITS_BLOCK_SIZE.saturating_sub(metadata)];
    caps.extend(core::iter::repeat_n(ITS_BLOCK_SIZE, dedicated));
    caps
}

/// The host simulator's model of TF-M's ITS: the same asset count, asset
/// size and flash room, checked before Mbed TLS (whose file-backed ITS has
/// no limits) creates a file.
#[cfg(not(target_os = "none"))]
pub(crate) mod host {
    use super::*;
    use crate::Error;
    use alloc::vec::Vec;

    /// See [`super::model_partition_files`].
    pub(crate) static PARTITION_FILES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

    /// Mbed TLS's file-backed ITS (`psa_its_file.c`) header in front of
    /// each `<uid>.psa_its` file: magic 8, size 4, flags 4.
    const ITS_FILE_HEADER_LEN: u64 = 16;

    /// Files Mbed TLS keeps in the current directory for PSA's key store,
    /// with their data size. Files of UIDs from 2^32 up (name
    /// `%08x%08x`, high word first) stand in for Protected Storage
    /// (`crate::storage`), which TF-M keeps in its own flash area: not
    /// counted.
    fn current_files() -> Vec<usize> {
        let Ok(dir) = std::fs::read_dir(".") else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".psa_its") && name != "tempfile.psa_its" && name.starts_with("00000000")
            })
            .filter_map(|e| e.metadata().ok())
            .map(|m| {
                usize::try_from(m.len().saturating_sub(ITS_FILE_HEADER_LEN)).unwrap_or(usize::MAX)
            })
            .collect()
    }

    fn align4(n: usize) -> usize {
        n.div_ceil(4) * 4
    }

    /// Whether TF-M's ITS would take one more file of `data_len` bytes of
    /// key data next to what is stored: the asset count, the asset size,
    /// and the flash blocks (first fit, largest files first: TF-M places
    /// files first-fit in creation order, so this is an optimistic model
    /// of fragmentation, exact for the count and the sizes).
    pub(crate) fn admit(data_len: usize) -> Result<(), Error> {
        let new_file = data_len + PSA_KEY_FILE_HEADER_LEN;
        if new_file > ITS_MAX_ASSET_SIZE {
            return Err(Error::TooLarge(data_len));
        }
        let mut files = current_files();
        files.extend(PARTITION_FILES.lock().unwrap_or_else(|e| e.into_inner()).iter());
        if files.len() + TFM_OWN_FILES + 1 > ITS_NUM_ASSETS {
            return Err(Error::StorageFull);
        }
        files.push(TFM_NV_SEED_LEN);
        files.push(new_file);
        let mut files: Vec<usize> = files.into_iter().map(align4).collect();
        files.sort_unstable_by(|a, b| b.cmp(a));
        let mut room = data_block_capacities();
        for f in files {
            match room.iter_mut().find(|r| **r >= f) {
                Some(r) => *r -= f,
                None => return Err(Error::StorageFull),
            }
        }
        Ok(())
    }
}
