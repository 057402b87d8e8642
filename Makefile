# charlm: `make test` and `make demo` set up .venv themselves (Python 3.10+ and pip are all they need).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

# The import contract first (pyproject.toml, [tool.importlinter]: no upward import, no cycle), then the tests.
test: $(STAMP)
	$(BIN)/lint-imports && $(BIN)/python -m pytest

# The main job on the shipped corpus: about two minutes of training, then sampling, scoring and
# the training curves (demo/curves.png); then a named-entity tagger trained for a minute on
# wikigold tags the notes' two Teddy sentences; a date-normalisation model trained for a minute
# translates written dates and draws its attention (demo/attention.png); then a language model
# given a label (dinosaur names by their ending, a minute) writes names for two labels.
demo: $(STAMP)
	mkdir -p demo
	$(BIN)/charlm tokenize --stats data/tinyshakespeare.txt
	cd demo && ../$(BIN)/charlm train ../data/tinyshakespeare.txt --time-limit 110 --eval-every 100 --force
	cd demo && ../$(BIN)/charlm sample --temperature 0.8 --length 400 --seed 1
	@echo "# The notes' pair: a model that has read two minutes of Shakespeare and never a salad cannot"
	@echo "# tell pear from pair (it may well prefer 'pair'); the same test on grammar it has seen:"
	cd demo && ../$(BIN)/charlm score "The apple and pear salad" "The apple and pair salad"
	cd demo && ../$(BIN)/charlm score "Thou art a villain." "Thou are a villain."
	cd demo && ../$(BIN)/charlm plot charlm.last.npz -o curves.png
	cd demo && ../$(BIN)/charlm train --task tag ../data/wikigold.train.txt --val-file ../data/wikigold.dev.txt \
		-o ner.npz --time-limit 60 --eval-every 42 --force
	cd demo && ../$(BIN)/charlm eval -m ner.npz ../data/wikigold.test.txt | head -4
	cd demo && ../$(BIN)/charlm tag -m ner.npz "He said, Teddy Roosevelt was a great President" "Teddy bears are on sale!"
	cd demo && ../$(BIN)/charlm tag -m ner.npz --spans "He said, Teddy Roosevelt was a great President" "Teddy bears are on sale!"
	@echo "# Sequence to sequence: a minute of training on written dates -> ISO dates, then its attention."
	cd demo && ../$(BIN)/python -c "from charlm.seq2seq.dates import write_date_pairs as w; \
		w('dates.tsv', 20000, seed=1); w('dates.dev.tsv', 200, seed=2); w('dates.test.tsv', 500, seed=3)"
	cd demo && ../$(BIN)/charlm train --task seq2seq dates.tsv --val-file dates.dev.tsv -o dates.npz \
		--hidden 64 --layers 1 --embedding 16 --eval-every 100 --time-limit 60 --force
	cd demo && ../$(BIN)/charlm translate -m dates.npz "the 29th of August 1958" "5/1/2001" "Aug 3, 2019" \
		"Saturday, March 14, 2015"
	cd demo && ../$(BIN)/charlm eval -m dates.npz dates.test.tsv | head -3
	cd demo && ../$(BIN)/charlm plot -m dates.npz --attention "the 29th of August 1958" -o attention.png --force
	@echo "# One-to-many given a label: dinosaur names labelled by their ending, a minute of training, then"
	@echo "# names for each label and the generative classifier's posterior (README: Conditional generation)"
	awk '{ print (tolower($$0) ~ /saurus$$/ ? "saurus" : "other") "\t" $$0 }' data/dinos.txt > demo/dinos-suffix.tsv
	cd demo && ../$(BIN)/charlm train --condition dinos-suffix.tsv -o dinos-cond.npz --hidden 128 --layers 1 \
		--time-limit 60 --eval-every 40 --force
	cd demo && ../$(BIN)/charlm sample -m dinos-cond.npz --label saurus --label other --num 5 --temperature 0.7 --seed 1
	cd demo && ../$(BIN)/charlm classify -m dinos-cond.npz --top-k 2 Tyrannosaurus Velociraptor

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo
