#!/usr/bin/env bash
# Checks that the C++/CUDA lines changed since BASE (default: the previous commit, HEAD~1) are
# formatted as .clang-format says. Only changed lines are looked at, so the tree is never reformatted
# wholesale. Prints the wanted changes and exits 1 if there are any; `git clang-format BASE` applies
# them. Skipped (exit 0, with a note) without git-clang-format or git history.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD~1}
if ! command -v git-clang-format >/dev/null || ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
  echo "check-format: skipped (no git-clang-format, or no commit $base)"
  exit 0
fi
diff=$(git clang-format --diff --extensions h,cpp,cu,cuh "$base" -- . 2>&1 || true)
case "$diff" in
  ""|"no modified files to format"*|"clang-format did not modify any files"*)
    echo "check-format: lines changed since $base are formatted"; exit 0;;
esac
echo "$diff"
echo "check-format: the lines above, changed since $base, are not formatted as .clang-format says;"
echo "              run: git clang-format $base"
exit 1
