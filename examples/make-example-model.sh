#!/usr/bin/env bash
# Rebuilds the project's example model, examples/kjv-llama/, from the King
# James Bible in Debian's archive (package bible-kjv-text, read with the
# `bible` program), with the project's own code:
#   1. the text, one chapter per row; every 25th chapter is held out
#      (examples/data/kjv/test.jsonl), the rest is training data, of which
#      every 25th chapter (offset 12) is also the calibration set for the
#      quantization examples (examples/data/kjv/calib.jsonl);
#   2. a byte-level BPE tokenizer trained on the training rows;
#   3. a Llama model (hidden 128, 4 layers, GQA 4/2 heads, tied embeddings)
#      trained from scratch with libtorch autograd;
#   4. the held-out perplexity against a unigram model, in training.json.
# Usage: examples/make-example-model.sh [steps, default 1500]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1500}
[[ -x build/bin/qjobs-worker ]] || scripts/build.sh
command -v bible >/dev/null || scripts/install-deps.sh

work=$(mktemp -d /tmp/qjobs-kjv.XXXXXX)
trap 'rm -rf "$work"' EXIT
bible -l0 "Gen1:1-Rev22:21" >"$work/kjv.txt"

# Chapters as JSON rows: "Genesis 1\nIn the beginning ...\nAnd the earth ...".
perl -e '
  my ($train, $test, $calib) = @ARGV;
  open(my $tr, ">", $train) or die; open(my $te, ">", $test) or die; open(my $ca, ">", $calib) or die;
  my ($title, @verses, $n) = ("", (), 0);
  sub esc { my $s = shift; $s =~ s/\\/\\\\/g; $s =~ s/"/\\"/g; return $s; }
  sub flush {
    return unless $title ne "" && @verses;
    my $row = "{\"text\": \"" . esc($title) . "\\n" . join("\\n", map { esc($_) } @verses) . "\"}\n";
    print $ca $row if $n % 25 == 12;
    print { ($n++ % 25 == 24) ? $te : $tr } $row;
  }
  while (my $line = <STDIN>) {
    chomp $line;
    next if $line =~ /^\s*$/;
    if ($line =~ /^\s+\d+\s+(.*)$/) { push @verses, $1; next; }
    flush(); $title = $line; @verses = ();
  }
  flush();
' "$work/train.jsonl" examples/data/kjv/test.jsonl examples/data/kjv/calib.jsonl <"$work/kjv.txt"
echo "rows: $(wc -l <"$work/train.jsonl") train, $(wc -l <examples/data/kjv/test.jsonl) held out"

build/bin/qjobs-worker train-tokenizer --data "$work/train.jsonl" --vocab-size 1024 --out "$work/tokenizer"
rm -rf examples/kjv-llama
build/bin/qjobs-worker train --data "$work/train.jsonl" --eval-data examples/data/kjv/test.jsonl \
  --tokenizer "$work/tokenizer" --out examples/kjv-llama --hidden 128 --intermediate 352 --layers 4 \
  --heads 4 --kv-heads 2 --steps "$steps" --batch-size 16 --seqlen 256 --lr 3e-3 --seed 1 \
  | tee "$work/training.json"
cp "$work/training.json" examples/kjv-llama/training.json
echo "examples/kjv-llama written"
