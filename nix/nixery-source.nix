# A package set named by Nixery's source string (builtins only):
#   nixpkgs!CHANNEL   a nixpkgs channel or commit, fetched from GitHub as a tarball
#   git!URL[!REV]     builtins.fetchGit (the host's git credentials); without REV the
#                     image tag picks it: 40 hex digits are a commit, `latest` the
#                     repository's HEAD, anything else a branch or tag name
#   path!DIR          a local directory (or file) holding a package set, by absolute path
# `!` separates the parts because builtins.split has no regex escapes (Nixery's choice).
# The set is imported with `args` when it is a function (nixpkgs takes { system }).
{
  pkgSource,
  tag ? "latest",
  args ? { },
}:
let
  inherit (builtins)
    elemAt
    fetchGit
    filter
    fetchTarball
    isFunction
    isString
    length
    match
    split
    substring
    ;
  parts = filter isString (split "!" pkgSource);
  kind = elemAt parts 0;
  part = i: if length parts > i then elemAt parts i else null;

  load = src: let set = import src; in if isFunction set then set args else set;

  channel = name: fetchTarball "https://github.com/NixOS/nixpkgs/archive/${name}.tar.gz";

  git =
    url: rev:
    fetchGit (
      if rev != null && match "[0-9a-f]{40}" rev != null then
        { inherit url rev; }
      else if rev == null || rev == "latest" then
        # The repository's HEAD, committed (without a ref, Nix 2.8 takes a local
        # repository's working tree, and a remote's `master`).
        {
          inherit url;
          ref = "HEAD";
        }
      else
        {
          inherit url;
          ref = rev;
        }
    );
in
if kind == "nixpkgs" && length parts == 2 then
  load (channel (part 1))
else if kind == "git" && (length parts == 2 || length parts == 3) then
  load (git (part 1) (if part 2 != null then part 2 else tag))
else if kind == "path" && length parts == 2 && substring 0 1 (part 1) == "/" then
  load (/. + part 1)
else
  throw "stevedore: package source ${pkgSource}: expected nixpkgs!CHANNEL, git!URL[!REV] or path!DIR with an absolute DIR"
