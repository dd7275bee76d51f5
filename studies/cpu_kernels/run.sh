#!/usr/bin/env bash
# Which CPU kernels compute the same bytes on this AVX512 Intel host, an AVX2-only Intel host and an AMD host: the
# kernel fingerprint (scripts/kernel_fingerprint.py) with four kernel settings, and a miniature of the pipeline
# (miniature.py) with the pinned ones and with MKL's COMPATIBLE branch, natively and under QEMU's user-mode emulation
# of an Intel Haswell and an AMD EPYC-Rome. Needs Debian's qemu-user (`apt-get install qemu-user`); about an hour on
# 2 cores, most of it the emulated miniatures. Writes results/SETTING_CPU.{fingerprint,miniature}.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=studies/cpu_kernels/results
mkdir -p "$out"
python=$(python3 -c "import sys; print(sys.executable)")  # the interpreter itself (pyenv's python3 is a shell script)
declare -A settings=(
  [own]="MKL_CBWR=AUTO ONEDNN_MAX_CPU_ISA=ALL"  # each CPU's widest kernels (ATen's: below; it does not cap them)
  [avx2_mkl]="ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2,STRICT ONEDNN_MAX_CPU_ISA=ALL"  # the pin before this study
  [pinned]=""                                                                         # sentiment_dpo.kernels.PINNED
  [compatible]="MKL_CBWR=COMPATIBLE,STRICT"                          # the pin with MKL's vendor-neutral branch
)
quiet() { grep -v "TCG doesn't support" >&2 || true; }
for cpu in native Haswell EPYC-Rome; do
  run=() && widest=avx512 && [ "$cpu" != native ] && run=(qemu-x86_64 -cpu "$cpu") && widest=avx2
  for setting in own avx2_mkl pinned compatible; do
    own=() && [ "$setting" = own ] && own=(ATEN_CPU_CAPABILITY=$widest)
    env ${settings[$setting]} "${own[@]}" "${run[@]}" "$python" scripts/kernel_fingerprint.py --json \
      > "$out/${setting}_$cpu.fingerprint.json" 2> >(quiet)
  done
  for setting in pinned compatible; do
    env ${settings[$setting]} "${run[@]}" "$python" studies/cpu_kernels/miniature.py \
      > "$out/${setting}_$cpu.miniature.json" 2> >(quiet)
  done
done
python3 studies/cpu_kernels/table.py "$out"
