"""Adversarial, real-looking replies. Several are verbatim SmolLM2-135M outputs seen on this
project's questions (marked "seen"), including its failure modes: rambling, several letters
mentioned, the word echoed, and answering with a spelling. Cases marked "issue 9" were read
wrongly before; each says why the expected reading is right. tests/test_parsing_audit.py reads
600 real replies a second, independent way."""
import pytest

from spelling_exp.tasks.parsing import Parsed, clean, parse_letter, parse_number, spelled_runs

# (reply, word, k, asked_as_last, strict, spelled, lenient)
LETTER_CASES = [
    ("n", "banana", 3, False, "n", False, "n"),
    ("N.", "banana", 3, False, "n", False, "n"),
    ("'n'", "banana", 3, False, "n", False, "n"),
    ('The 3rd letter of banana is "n".', "banana", 3, False, "n", False, "n"),  # seen
    ('The 3rd letter of the word banana is "N".', "banana", 3, False, "n", False, "n"),  # seen
    ("The third letter of 'banana' is n.", "banana", 3, False, "n", False, "n"),
    ("The answer is: b", "banana", 1, False, "b", False, "b"),
    ("Answer: **l**", "pelican", 3, False, "l", False, "l"),
    ("The letter is 'c', not 'a'.", "pelican", 5, False, "c", False, "c"),  # several letters mentioned
    ("In the word \"pelican\", the letter in position 2 is the letter e, which is a vowel.",
     "pelican", 2, False, "e", False, "e"),
    ("The last letter of 'hovel' is L", "hovel", 5, True, "l", False, "l"),
    ("It is a.", "banana", 2, False, "a", False, "a"),
    ("The word 'pelican' is a bird. It is a large water bird with a pouch.", "pelican", 3, False, None, False, None),
    ("The 5th letter of 'hovel' is h o v l e.", "hovel", 5, False, None, True, "e"),  # spelling instead of answer
    ("hovel is spelled h-o-v-e-l.", "hovel", 4, False, None, True, "e"),
    ("Letter by letter: p, e, l, i, c, a, n. Together these letters form the word pelican.",
     "pelican", 3, False, None, True, "l"),
    ("p-e-l-i-c-a-n", "pelican", 7, True, None, True, "n"),
    ("<think>\n\n</think>\n\nThe 2nd letter is 'e'.", "pelican", 2, False, "e", False, "e"),
    ("<think>\nlet me spell it: p e l\n</think>\n\nl", "pelican", 3, False, "l", False, "l"),
    ("I'm sorry, I cannot determine that.", "pelican", 3, False, None, False, None),
    ("", "pelican", 3, False, None, False, None),
    ("The word 'pelican' has 7 letters.", "pelican", 3, False, None, False, None),  # echo + rambling
    ("Sure! The 4th letter in 'garden' is \u201cd\u201d.", "garden", 4, False, "d", False, "d"),
    ("The 1st letter of the word \"apple\" is \"A\". The word \"apple\" is a fruit that is red or green.",
     "apple", 1, False, "a", False, "a"),  # seen style: correct answer then rambling
    # issue 9: an answer next to a spelling. The run must not swallow the answer across a line
    # break, a sentence break or a change of separator, and a letter glued in front of a
    # spelling of the word is the answer; the lenient reading comes from the word's letters.
    ("l\np-e-l-i-c-a-n", "pelican", 3, False, "l", True, "l"),  # answer, spelling on the next line
    ("The 3rd letter is l. P-e-l-i-c-a-n.", "pelican", 3, False, "l", True, "l"),  # sentence break
    ("The answer is: l\n\np e l i c a n", "pelican", 3, False, "l", True, "l"),  # blank line
    ("p-e-l-i-c-a-n -> l", "pelican", 3, False, "l", True, "l"),  # separator changes to " -> "
    ("l (p-e-l-i-c-a-n)", "pelican", 3, False, "l", True, "l"),  # a leading letter that ends its clause
    ("l p e l i c a n", "pelican", 3, False, "l", True, "l"),  # glued: without "l" the run is "pelican"
    ("p p e l i c a n", "pelican", 1, False, "p", True, "p"),  # glued, even when it is the word's 1st letter
    ("p-e-l-i-c-a-n", "pelican", 1, False, None, True, "p"),  # no glue: the spelling's own first letter
    # issue 9: the article "a" is not an answer
    ("is a consonant: 'l'", "pelican", 3, False, "l", False, "l"),
    ("The answer is a single letter: l", "pelican", 3, False, "l", False, "l"),
    ("The word sixer ends with a y.", "sixer", 5, True, "y", False, "y"),  # seen: "a" before the answer
    # issue 9: answers missed before
    ("I think it's e", "pelican", 2, False, "e", False, "e"),  # "it's" introduces the answer
    ("Letter l", "pelican", 3, False, "l", False, "l"),  # the whole reply names one letter
    # kept from before: after "answer is" a bare letter needs no clause end
    ("The answer is B because it is the second letter.", "banana", 2, False, "b", False, "b"),
    ("**Answer:** l", "pelican", 3, False, "l", False, "l"),  # markdown closes before the answer
    ("The word rhinocerotic ends with r.", "rhinocerotic", 12, True, "r", False, "r"),  # seen
    ("The letter b.", "blurb", 5, True, "b", False, "b"),  # seen: the letter named, nothing else said
    ('The letter "S" is in position 1.', "sitiophobia", 1, False, "s", False, "s"),  # seen: stated position
    ("The letter 'B' is the last letter of the word 'beadlehood'.", "beadlehood", 10, True, "b", False, "b"),  # seen
    ('The letter "p" in "pilgrimary" is "P".', "pilgrimatic", 11, True, "p", False, "p"),  # seen
    ("The first letter of the word disgarnish is d-.", "disgarnish", 1, False, "d", False, "d"),  # seen
    # A letter the reply only talks about is no answer (a documented choice; the old parser read
    # the quoted letter): it is neither given as the answer nor put at a position.
    ("The letter 'L' is not available in the word \"adumbrative.\"",
     "adumbrative", 11, True, None, False, None),  # seen
    ("The letter 'x' is a special letter in English, and the word 'picknick' is a word composed entirely of letters.",
     "picknick", 8, True, None, False, None),  # seen
    ('A: 1\n\nThe code I\'m using to generate the 1st letter of "phlebenteric" is the "2"',
     "phlebenteric", 1, False, None, False, None),  # seen: "A:" is a label
]


@pytest.mark.parametrize("reply,word,k,last,strict,spelled,lenient", LETTER_CASES)
def test_parse_letter(reply, word, k, last, strict, spelled, lenient):
    p = parse_letter(reply, word, k, last)
    assert (p.value, p.spelled, p.lenient, p.ambiguous) == (strict, spelled, lenient, False)


# (reply, word, letter, strict, spelled, lenient)
COUNT_CASES = [
    ("3", "strawberry", "r", "3", False, "3"),
    ("3.", "strawberry", "r", "3", False, "3"),
    ("three", "strawberry", "r", "3", False, "3"),
    ("The letter 'r' appears 3 times in the word 'strawberry'.", "strawberry", "r", "3", False, "3"),
    ("The letter \"r\" appears three times in \"strawberry\".", "strawberry", "r", "3", False, "3"),
    ("There are 2 r's in strawberry.", "strawberry", "r", "2", False, "2"),
    ("The word 'strawberry' has 10 letters and 3 r's.", "strawberry", "r", "3", False, "3"),  # two numbers
    ("The word 'strawberry' has 10 letters, and r appears in it 3 times.", "strawberry", "r", "3", False, "3"),
    ("It appears once.", "pelican", "p", "1", False, "1"),
    ("The letter 'n' appears twice in banana.", "banana", "n", "2", False, "2"),
    ("The letter 'z' does not appear in 'pelican'.", "pelican", "z", "0", False, "0"),
    ("There are no z's in pelican.", "pelican", "z", "0", False, "0"),
    ("Zero.", "pelican", "z", "0", False, "0"),
    ("The answer is 0", "pelican", "z", "0", False, "0"),
    ("Answer: **2**", "banana", "n", "2", False, "2"),
    ("The count is: 4", "mississippi", "s", "4", False, "4"),
    ("s-t-r-a-w-b-e-r-r-y", "strawberry", "r", None, True, "3"),  # spelled, no number
    ("strawberry is spelled s t r a w b e r r y.", "strawberry", "r", None, True, "3"),
    ("b, a, n, a, n, a has 3 a's", "banana", "a", "3", True, "3"),
    ("<think>\n\n</think>\n\n2", "banana", "n", "2", False, "2"),
    ("I don't know.", "banana", "n", None, False, None),
    ("The 3rd letter of banana is n.", "banana", "n", None, False, None),  # ordinal is not a count
    ("", "banana", "n", None, False, None),
    # issue 9: a refusal is not a zero (it used to score as a correct 0 for an absent letter)
    ("I don't have the ability to count letters", "pelican", "z", None, False, None),
    ("I do not have enough information", "pelican", "z", None, False, None),
    ("I'm sorry for your loss, but as a chatbot designed to assist in editing and improving language, I don't "
     "have the capability to calculate absolute numbers.", "bribetaker", "z", None, False, None),  # seen
    # issue 9: a word length is not the count of a letter
    ("The word 'hello' has 5 letters.", "hello", "l", None, False, None),
    ("There are 10 letters in it; 3 of them are r", "strawberry", "r", "3", False, "3"),
    ('The word "imprimatur" is 24 letters, so it is 8 digits.', "imprimatur", "u", None, False, None),  # seen
    # issue 9: counts missed before
    ("There is no letter 'z'", "pelican", "z", "0", False, "0"),
    ("'z' is absent", "pelican", "z", "0", False, "0"),
    ("a single 'e'", "pelican", "e", "1", False, "1"),
    ("3x", "strawberry", "r", "3", False, "3"),
    ("**Answer:** 3", "strawberry", "r", "3", False, "3"),  # markdown closes before the answer
    ("1. 1g\n\nThis is the only number that appears to be the letter 'g' in the given sentence.",
     "preaver", "g", "1", False, "1"),  # seen: "1g" is one g; "1." is list numbering
    # not counts
    ("1. f\n2. i\n3. n\n4. a", "silicane", "f", None, False, None),  # seen: list numbering
    ("No, no, no!", "hippoboscid", "s", None, False, None),  # seen: an interjection, not "no s"
    ("0.5.", "deathfully", "g", None, False, None),  # seen: a decimal is no count
    ("The letter 'r' is one of the letters", "strawberry", "r", None, False, None),  # "one of" is no count
]


@pytest.mark.parametrize("reply,word,letter,strict,spelled,lenient", COUNT_CASES)
def test_parse_count(reply, word, letter, strict, spelled, lenient):
    p = parse_number(reply, word, letter)
    assert (p.value, p.spelled, p.lenient, p.ambiguous) == (strict, spelled, lenient, False)


# The ambiguity rule (module docstring of parsing.py): (reply, word, k, asked_as_last, strict, ambiguous, lenient)
AMBIGUITY_LETTER_CASES = [
    # several answers, one bound to the asked position: that one wins
    ("The first letter is 'p', the second is 'e', and the third is 'l'", "pelican", 3, False, "l", False, "l"),
    ("The first letter is 'p', the second is 'e', and the third is 'l'", "pelican", 2, False, "e", False, "e"),
    # ... none bound to the asked (4th) position: ambiguous
    ("The first letter is 'p', the second is 'e', and the third is 'l'", "pelican", 4, False, None, True, None),
    # two committed answers, no position named: ambiguous
    ("It is 'p'. It is 'l'.", "pelican", 3, False, None, True, None),
    # a self-correction is ambiguous, even when the correction names the position
    ("It is 'p'. No wait, it is 'l'.", "pelican", 3, False, None, True, None),
    ("The 3rd letter is 'p'. Actually, the 3rd letter is 'l'.", "pelican", 3, False, None, True, None),
    # an ambiguous reply keeps the lenient reading of its spelling
    ("It is 'p'. No wait, it is 'l': p-e-l-i-c-a-n", "pelican", 3, False, None, True, "l"),
    # repeating the same answer is not ambiguity (seen, second example)
    ("It is 'l'. Yes, the answer is 'l'.", "pelican", 3, False, "l", False, "l"),
    ('The letter "v" is in position 5, so the correct answer is "v".', "covetiveness", 5, False, "v", False, "v"),
    # seen: a letter stated as the last one outweighs one the reply only talks about
    ("The letter \"E\" is not a valid alphanumeric combination, as it is a consonant. Therefore, the last letter "
     "of the word 'aglobulia' is 'G'.", "aglobulia", 9, True, "g", False, "g"),
    # seen: "ends with g" and "followed by the letter A", both in a sentence about the end: ambiguous
    ('The letter "ant" is the only letter that ends with "g", which is why it is always followed by the letter "A" '
     "(to denote the end of the alphabet).", "antighostism", 12, True, None, True, None),
]


@pytest.mark.parametrize("reply,word,k,last,strict,ambiguous,lenient", AMBIGUITY_LETTER_CASES)
def test_letter_ambiguity(reply, word, k, last, strict, ambiguous, lenient):
    p = parse_letter(reply, word, k, last)
    assert (p.value, p.ambiguous, p.lenient) == (strict, ambiguous, lenient)


# (reply, word, letter, strict, ambiguous)
AMBIGUITY_COUNT_CASES = [
    ("3... actually 2", "strawberry", "r", None, True),  # a self-correction
    ("The word 'strawberry' has 3 r's. Wait, 2 r's.", "strawberry", "r", None, True),
    ("The letter 'r' appears 3 times; that is, 3.", "strawberry", "r", "3", False),  # repeated, not ambiguous
    ("The letter 's' appears twice in the word 'worklessness', but only once.",
     "worklessness", "s", None, True),  # seen: "twice ... but only once"
    ("There are 2 x 12 = 24 occurrences of x.", "papeterie", "x", None, True),  # seen: 2 x's and 24 occurrences
    # seen: "100:12" is a ratio or label, not "answer: 12"; what is left is lone numbers, 100 and 12
    ("100:12:12:12:12:12:12:12:12:12:12:12:12:", "lithosol", "h", None, True),
]


@pytest.mark.parametrize("reply,word,letter,strict,ambiguous", AMBIGUITY_COUNT_CASES)
def test_count_ambiguity(reply, word, letter, strict, ambiguous):
    p = parse_number(reply, word, letter)
    assert (p.value, p.ambiguous) == (strict, ambiguous)


def test_parsed_keeps_its_positional_fields():
    """recipe.py reads value, lenient, spelled; ambiguous is a fourth field that defaults to False."""
    p = Parsed("l", False, "l")
    assert (p.value, p.spelled, p.lenient, p.ambiguous, p.answered) == ("l", False, "l", False, True)
    assert not Parsed(None, True, "l", True).answered


def test_parse_length():
    assert parse_number("The word 'pelican' has 7 letters.", "pelican").value == "7"
    assert parse_number("p e l i c a n", "pelican").lenient == "7"


def test_spelled_runs_ignore_ordinary_prose():
    assert spelled_runs("I think a cat is a pet.") == []
    assert [r[2] for r in spelled_runs("It goes h - o - v - e - l, ok")] == ["hovel"]


def test_spelled_runs_stop_at_breaks_and_separator_changes():
    assert [r[2] for r in spelled_runs("The 3rd letter is l. P-e-l-i-c-a-n.")] == ["pelican"]
    assert [r[2] for r in spelled_runs("p-e-l-i-c-a-n -> l")] == ["pelican"]
    assert [r[2] for r in spelled_runs("l\np e l i c a n")] == ["pelican"]
    assert [r[2] for r in spelled_runs("p.i.t.i.y.y.y.y.")] == ["pitiyyyy"]  # dotted spelling is one run


def test_clean_strips_think_blocks():
    assert clean("<think>\nhmm\n</think>\n\nx") == "x"
    assert clean("</think> y") == "y"


def test_at_least_thirty_cases():
    assert len(LETTER_CASES) + len(COUNT_CASES) >= 30
