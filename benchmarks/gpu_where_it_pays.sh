# The where-it-pays search and its confirmation on one GPU, in one call (docs/where-it-pays.md). Sourced by
# benchmarks/gpu_check.sh when GPU_CHECK_TASK=where-it-pays, after it found python, the corpus and the device; it
# uses that script's PY, DEVICE, CORPUS, SMOKE, OUT, WORK and its phase/note/left helpers.
#   1. scripts/where_it_pays.sh on configs/where-it-pays/search.yaml: 4 teachers (first one alone: it prepares the
#      data, then 3 at once), then the baseline and 15 students of 6.1M tokens each, WIP_JOBS (default 9) at a time.
#      On the 2-core CPU this takes about three sessions; on a GPU the students share it side by side.
#   2. only if every run of 1 finished: scripts/where_it_pays_confirm.py picks the leader by the fixed rule, and
#      the script trains leader, teacher and baseline on seeds 1, 2, 3 (archive: WIP_ARCHIVE-confirm).
#   3. everything to keep goes into one tar.gz, split into $OUT/where-it-pays.tgz.part-NN (the device tool brings
#      back files of at most 16 MiB). At home, from the repository root:
#        cat /work/.device/.../where-it-pays.tgz.part-* | tar xzf -
#      restores results/where-it-pays/archive{,-confirm}/, configs/where-it-pays/confirm.yaml, the reports and the
#      logs under runs/. Commit the archives; `bash scripts/where_it_pays.sh` then reports again on CPU from them
#      without training (the archives carry every whole-split loss the reports need).
# Archives keep the teachers' weights only (KEEP_WEIGHTS=teachers), to stay small: every diagnostic is computed on
# the GPU, where the baselines' weights still are. Batches that finished before a timeout are archived and packed
# too; a later call, with those archives committed, restores them and trains only what is missing.
# The corpus must come along: shared/corpus/ in the checkout with wiki.valid.raw, wiki.test.raw and
# wiki2015.train.00.raw.xz (the search reads the first 24 MB of training text, all inside part 00).
WIP_RECIPE="${WIP_RECIPE:-configs/where-it-pays/search.yaml}"
WIP_ARCHIVE="${WIP_ARCHIVE:-results/where-it-pays/archive}"
WIP_JOBS="${WIP_JOBS:-9}"
WIP_CONFIRM_RECIPE="$(dirname "$WIP_RECIPE")/confirm.yaml"
if [ -z "$CORPUS" ] && [ "$SMOKE" != 1 ]; then
  note "FATAL: the search needs the real corpus: copy wiki.valid.raw, wiki.test.raw and wiki2015.train.00.raw.xz from ../shared/corpus into shared/corpus/"
  exit 1
fi
[ -z "$CORPUS" ] || export BOOTDISTILL_CORPUS="$CORPUS"  # not data.corpus: that would rename every run
export OMP_NUM_THREADS=2  # nine processes share 16 cores; on CUDA their CPU side needs little
# scripts/where_it_pays.sh calls `bootdistill` and `python`: this python's, from src/ when it is not installed
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec "%s" -m bootdistill.cli "$@"\n' "$PY" > "$WORK/bin/bootdistill"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" > "$WORK/bin/python"  # not a link: a venv's python needs its own path
chmod +x "$WORK/bin/bootdistill" "$WORK/bin/python"
export PATH="$WORK/bin:$PATH"
RUNS_OUT="$("$PY" -c 'import sys; from bootdistill.experiment import load_recipe
print(load_recipe(sys.argv[1])[1][0].run_dir.parent)' "$WIP_RECIPE")"  # as the recipe resolves it
SEARCH="KEEP_WEIGHTS=teachers DEVICE=$DEVICE JOBS=$WIP_JOBS TEACHER_JOBS=3 bash scripts/where_it_pays.sh"

note "where-it-pays: recipe $WIP_RECIPE, $WIP_JOBS students at a time on $DEVICE, archive $WIP_ARCHIVE"
wip_status=1
# the search may take all the time (what it finishes is archived, and the confirmation is quick to add in another
# call); the confirmation runs only if WIP_CONFIRM_MIN seconds are left; packing keeps 30
if phase wip_search "$(( $(left) - 30 ))" "RECIPE='$WIP_RECIPE' ARCHIVE='$WIP_ARCHIVE' $SEARCH"; then
  if (( $(left) >= ${WIP_CONFIRM_MIN:-150} )); then
    phase wip_confirm "$(( $(left) - 20 ))" "'$PY' scripts/where_it_pays_confirm.py --recipe '$WIP_RECIPE' \
--report '$RUNS_OUT.report-val/report.json' --out '$WIP_CONFIRM_RECIPE' \
&& RECIPE='$WIP_CONFIRM_RECIPE' ARCHIVE='$WIP_ARCHIVE-confirm' $SEARCH" && wip_status=0
  else
    note "wip_confirm: SKIPPED (too little time left; commit the search's archives and call again)"
  fi
else
  note "wip_confirm: not started: the search did not finish (its finished batches are archived and packed; commit them and call again)"
fi

packed=()
for f in "$WIP_ARCHIVE" "$WIP_ARCHIVE-confirm" "$WIP_CONFIRM_RECIPE" "$RUNS_OUT".report-val "$RUNS_OUT".report-test \
         "$RUNS_OUT".logs "$RUNS_OUT"-confirm.report-val "$RUNS_OUT"-confirm.report-test "$RUNS_OUT"-confirm.logs; do
  [ -e "$f" ] && packed+=("$f")
done
if [ ${#packed[@]} -gt 0 ]; then
  tar czf - --exclude=".*.tmp" "${packed[@]}" 2> >(grep -v "Removing leading" >>"$OUT/summary.txt") | split -b 15M -d - "$OUT/where-it-pays.tgz.part-"
  note "packed ${packed[*]} into $(ls "$OUT"/where-it-pays.tgz.part-* | wc -l) part(s), $(du -ch "$OUT"/where-it-pays.tgz.part-* | tail -1 | cut -f1)"
else
  note "nothing to pack: no run finished"
fi
for r in "$RUNS_OUT".report-val "$RUNS_OUT"-confirm.report-val "$RUNS_OUT"-confirm.report-test; do
  [ -f "$r/report.md" ] && { note "== $r/report.md (savings)"; awk '/^\|/ {t = 1; print; next} t {exit}' "$r/report.md" >> "$OUT/summary.txt"; }
done
note "total $(( $(date +%s) - START )) s; results in $OUT"
exit $wip_status
