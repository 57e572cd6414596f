"""Adversarial, real-looking replies. Several are verbatim SmolLM2-135M outputs seen on this
project's questions (marked "seen"), including its failure modes: rambling, several letters
mentioned, the word echoed, and answering with a spelling."""
import pytest

from spelling_exp.evaluation.parsing import clean, parse_letter, parse_number, spelled_runs

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
]


@pytest.mark.parametrize("reply,word,k,last,strict,spelled,lenient", LETTER_CASES)
def test_parse_letter(reply, word, k, last, strict, spelled, lenient):
    p = parse_letter(reply, word, k, last)
    assert (p.value, p.spelled, p.lenient) == (strict, spelled, lenient)


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
]


@pytest.mark.parametrize("reply,word,letter,strict,spelled,lenient", COUNT_CASES)
def test_parse_count(reply, word, letter, strict, spelled, lenient):
    p = parse_number(reply, word, letter)
    assert (p.value, p.spelled, p.lenient) == (strict, spelled, lenient)


def test_parse_length():
    assert parse_number("The word 'pelican' has 7 letters.", "pelican").value == "7"
    assert parse_number("p e l i c a n", "pelican").lenient == "7"


def test_spelled_runs_ignore_ordinary_prose():
    assert spelled_runs("I think a cat is a pet.") == []
    assert [r[2] for r in spelled_runs("It goes h - o - v - e - l, ok")] == ["hovel"]


def test_clean_strips_think_blocks():
    assert clean("<think>\nhmm\n</think>\n\nx") == "x"
    assert clean("</think> y") == "y"


def test_at_least_thirty_cases():
    assert len(LETTER_CASES) + len(COUNT_CASES) >= 30
