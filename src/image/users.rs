//! User and group names for ids, as Python's `pwd.getpwuid` / `grp.getgrgid` find them
//! (the customisation layer's outer header carries them, as nixpkgs' streamer does).

use std::ffi::CStr;

/// The login name of `uid` on this host, or empty if there is none.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of pwd's fields.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return String::new();
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in buf.
    unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// The name of group `gid` on this host, or empty if there is none.
pub fn group_name(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: as above.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return String::new();
    }
    // SAFETY: getgrgid_r succeeded, so gr_name points into buf.
    unsafe { CStr::from_ptr(grp.gr_name) }
        .to_string_lossy()
        .into_owned()
}
