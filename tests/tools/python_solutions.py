"""Reference (score 1.0) and wrong (score < 1.0) solutions of the built-in python problems."""

from __future__ import annotations

REFERENCE: dict[str, str] = {
    "py/two-sum": """
def two_sum(nums, target):
    seen = {}
    for j, x in enumerate(nums):
        if target - x in seen:
            return (seen[target - x], j)
        seen.setdefault(x, j)
""",
    "py/reverse-words": """
def reverse_words(s):
    return " ".join(reversed(s.split()))
""",
    "py/is-palindrome": """
def is_palindrome(s):
    t = [c.lower() for c in s if c.isalnum()]
    return t == t[::-1]
""",
    "py/fizzbuzz": """
def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        s = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        out.append(s or str(i))
    return out
""",
    "py/valid-parentheses": """
def is_valid(s):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for c in s:
        if c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
        else:
            stack.append(c)
    return not stack
""",
    "py/max-subarray": """
def max_subarray(nums):
    best = cur = nums[0]
    for x in nums[1:]:
        cur = max(x, cur + x)
        best = max(best, cur)
    return best
""",
    "py/binary-search": """
def binary_search(nums, target):
    lo, hi = 0, len(nums) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if nums[mid] == target:
            return mid
        if nums[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
""",
    "py/merge-intervals": """
def merge_intervals(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out
""",
    "py/roman-to-int": """
def roman_to_int(s):
    v = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, c in enumerate(s):
        if i + 1 < len(s) and v[c] < v[s[i + 1]]:
            total -= v[c]
        else:
            total += v[c]
    return total
""",
    "py/int-to-roman": """
def int_to_roman(n):
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
             (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, sym in table:
        while n >= value:
            out += sym
            n -= value
    return out
""",
    "py/anagram-groups": """
def group_anagrams(words):
    groups = {}
    for w in words:
        groups.setdefault("".join(sorted(w)), []).append(w)
    return sorted(sorted(g) for g in groups.values())
""",
    "py/word-count": """
import re
from collections import Counter

def word_count(text):
    return dict(Counter(re.findall(r"[a-z]+", text.lower())))
""",
    "py/flatten": """
def flatten(items):
    out = []
    for x in items:
        if isinstance(x, list):
            out.extend(flatten(x))
        else:
            out.append(x)
    return out
""",
    "py/chunk-list": """
def chunk(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]
""",
    "py/gcd-lcm": """
def gcd_lcm(a, b):
    x, y = a, b
    while y:
        x, y = y, x % y
    return (x, a * b // x)
""",
    "py/is-prime": """
def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True
""",
    "py/primes-up-to": """
def primes_up_to(n):
    if n < 2:
        return []
    sieve = bytearray([1]) * (n + 1)
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(sieve[i * i::i]))
    return [i for i, p in enumerate(sieve) if p]
""",
    "py/fibonacci": """
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
""",
    "py/digit-sum": """
def digital_root(n):
    while n >= 10:
        n = sum(int(d) for d in str(n))
    return n
""",
    "py/run-length": """
from itertools import groupby

def rle_encode(s):
    return "".join(f"{len(list(g))}{c}" for c, g in groupby(s))
""",
    "py/run-length-decode": """
def rle_decode(s):
    out, num = [], ""
    for c in s:
        if c.isdigit():
            num += c
        else:
            out.append(c * int(num))
            num = ""
    return "".join(out)
""",
    "py/caesar": """
def caesar(text, shift):
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + shift) % 26 + 97))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - 65 + shift) % 26 + 65))
        else:
            out.append(c)
    return "".join(out)
""",
    "py/matrix-transpose": """
def transpose(matrix):
    return [list(col) for col in zip(*matrix)]
""",
    "py/spiral-order": """
def spiral_order(matrix):
    out = []
    m = [row[:] for row in matrix]
    while m:
        out.extend(m.pop(0))
        m = [list(r) for r in zip(*m)][::-1]
    return out
""",
    "py/second-largest": """
def second_largest(nums):
    d = sorted(set(nums))
    return d[-2] if len(d) >= 2 else None
""",
    "py/rotate-list": """
def rotate(nums, k):
    if not nums:
        return []
    k %= len(nums)
    return nums[-k:] + nums[:-k] if k else list(nums)
""",
    "py/balanced-split": """
def can_partition(nums):
    total = sum(nums)
    if total % 2:
        return False
    reach = 1
    for x in nums:
        reach |= reach << x
    return bool(reach >> (total // 2) & 1)
""",
    "py/longest-common-prefix": """
import os

def common_prefix(words):
    return os.path.commonprefix(words) if words else ""
""",
    "py/longest-unique-substring": """
def longest_unique(s):
    last, start, best = {}, 0, 0
    for i, c in enumerate(s):
        if c in last and last[c] >= start:
            start = last[c] + 1
        last[c] = i
        best = max(best, i - start + 1)
    return best
""",
    "py/climb-stairs": """
def climb_stairs(n):
    a, b = 1, 1
    for _ in range(n):
        a, b = b, a + b
    return a
""",
    "py/coin-change": """
def coin_change(coins, amount):
    inf = float("inf")
    best = [0] + [inf] * amount
    for a in range(1, amount + 1):
        for c in coins:
            if c <= a and best[a - c] + 1 < best[a]:
                best[a] = best[a - c] + 1
    return best[amount] if best[amount] != inf else -1
""",
    "py/edit-distance": """
def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
""",
    "py/count-islands": """
def count_islands(grid):
    seen = set()
    count = 0
    for r in range(len(grid)):
        for c in range(len(grid[0])):
            if grid[r][c] == "1" and (r, c) not in seen:
                count += 1
                stack = [(r, c)]
                seen.add((r, c))
                while stack:
                    y, x = stack.pop()
                    for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                        if 0 <= ny < len(grid) and 0 <= nx < len(grid[0]) and grid[ny][nx] == "1" and (ny, nx) not in seen:
                            seen.add((ny, nx))
                            stack.append((ny, nx))
    return count
""",
    "py/shortest-path": """
from collections import deque

def shortest_path(edges, start, goal):
    adj = {}
    for u, v in edges:
        adj.setdefault(u, []).append(v)
        adj.setdefault(v, []).append(u)
    dist = {start: 0}
    q = deque([start])
    while q:
        u = q.popleft()
        if u == goal:
            return dist[u]
        for v in adj.get(u, []):
            if v not in dist:
                dist[v] = dist[u] + 1
                q.append(v)
    return -1
""",
    "py/topological-sort": """
import heapq

def course_order(n, prereqs):
    indeg = [0] * n
    adj = [[] for _ in range(n)]
    for a, b in prereqs:
        adj[b].append(a)
        indeg[a] += 1
    heap = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        u = heapq.heappop(heap)
        out.append(u)
        for v in adj[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(heap, v)
    return out if len(out) == n else []
""",
    "py/matrix-multiply": """
def matmul(a, b):
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]
""",
    "py/base-convert": """
def to_base(n, base):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    out = ""
    while n:
        n, r = divmod(n, base)
        out = digits[r] + out
    return sign + out
""",
    "py/parse-duration": """
import re

def parse_duration(text):
    m = re.fullmatch(r"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?", text)
    if not text or not m:
        raise ValueError(f"bad duration: {text!r}")
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s
""",
    "py/stack-min": """
def run_min_stack(ops):
    stack, out = [], []
    for op in ops:
        if op[0] == "push":
            stack.append((op[1], min(op[1], stack[-1][1]) if stack else op[1]))
        elif op[0] == "pop":
            stack.pop()
        else:
            out.append(stack[-1][1] if stack else None)
    return out
""",
    "py/lru-cache": """
from collections import OrderedDict

def run_lru(capacity, ops):
    cache, out = OrderedDict(), []
    for op in ops:
        if op[0] == "get":
            if op[1] in cache:
                cache.move_to_end(op[1])
                out.append(cache[op[1]])
            else:
                out.append(-1)
        else:
            cache[op[1]] = op[2]
            cache.move_to_end(op[1])
            if len(cache) > capacity:
                cache.popitem(last=False)
    return out
""",
    "py/median-of-lists": """
def median(a, b):
    m = sorted(a + b)
    n = len(m)
    return float(m[n // 2]) if n % 2 else (m[n // 2 - 1] + m[n // 2]) / 2
""",
    "py/sum-digits-string": """
def add_strings(a, b):
    i, j, carry, out = len(a) - 1, len(b) - 1, 0, []
    while i >= 0 or j >= 0 or carry:
        d = carry + (ord(a[i]) - 48 if i >= 0 else 0) + (ord(b[j]) - 48 if j >= 0 else 0)
        out.append(chr(d % 10 + 48))
        carry = d // 10
        i -= 1
        j -= 1
    return "".join(reversed(out))
""",
    "py/histogram-area": """
def largest_rectangle(heights):
    stack, best = [], 0
    for i, h in enumerate(list(heights) + [0]):
        start = i
        while stack and stack[-1][1] >= h:
            start, sh = stack.pop()
            best = max(best, sh * (i - start))
        stack.append((start, h))
    return best
""",
    "py/json-path": """
def get_path(data, path):
    if path == "":
        return data
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur
""",
}

#: Plausible but wrong solutions (each fails at least one hidden test).
WRONG: dict[str, str] = {
    "py/two-sum": "def two_sum(nums, target):\n    return (0, 1)\n",
    "py/reverse-words": "def reverse_words(s):\n    return ' '.join(reversed(s.split(' ')))\n",
    "py/is-palindrome": "def is_palindrome(s):\n    return s == s[::-1]\n",
    "py/fizzbuzz": (
        "def fizzbuzz(n):\n    return ['Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else str(i) for i in range(1, n + 1)]\n"
    ),
    "py/valid-parentheses": (
        "def is_valid(s):\n"
        "    return s.count('(') == s.count(')') and s.count('[') == s.count(']') and s.count('{') == s.count('}')\n"
    ),
    "py/max-subarray": "def max_subarray(nums):\n    return sum(x for x in nums if x > 0)\n",
    "py/binary-search": "def binary_search(nums, target):\n    return nums.index(target) if target in nums[:-1] else -1\n",
    "py/merge-intervals": (
        "def merge_intervals(intervals):\n    out = []\n    for s, e in sorted(intervals):\n"
        "        if out and s < out[-1][1]:\n            out[-1][1] = max(out[-1][1], e)\n"
        "        else:\n            out.append([s, e])\n    return out\n"
    ),
    "py/roman-to-int": (
        "def roman_to_int(s):\n    v = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n"
        "    return sum(v[c] for c in s)\n"
    ),
    "py/int-to-roman": (
        "def int_to_roman(n):\n    out = ''\n"
        "    for value, sym in [(1000, 'M'), (500, 'D'), (100, 'C'), (50, 'L'), (10, 'X'), (5, 'V'), (1, 'I')]:\n"
        "        while n >= value:\n            out += sym\n            n -= value\n    return out\n"
    ),
    "py/anagram-groups": "def group_anagrams(words):\n    return [[w] for w in sorted(words)]\n",
    "py/word-count": (
        "def word_count(text):\n    out = {}\n    for w in text.lower().split():\n"
        "        out[w] = out.get(w, 0) + 1\n    return out\n"
    ),
    "py/flatten": (
        "def flatten(items):\n    out = []\n    for x in items:\n        if isinstance(x, (list, tuple)):\n"
        "            out.extend(flatten(x))\n        else:\n            out.append(x)\n    return out\n"
    ),
    "py/chunk-list": "def chunk(items, size):\n    return [items[i:i + size] for i in range(0, len(items) - size + 1, size)]\n",
    "py/gcd-lcm": "def gcd_lcm(a, b):\n    return (min(a, b), a * b)\n",
    "py/is-prime": "def is_prime(n):\n    return n > 1 and all(n % p for p in (2, 3, 5))\n",
    "py/primes-up-to": (
        "def primes_up_to(n):\n    return [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]\n"
    ),
    "py/fibonacci": "def fib(n):\n    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n",
    "py/digit-sum": "def digital_root(n):\n    return sum(int(d) for d in str(n))\n",
    "py/run-length": "def rle_encode(s):\n    return ''.join(f'{s.count(c)}{c}' for c in dict.fromkeys(s))\n",
    "py/run-length-decode": "def rle_decode(s):\n    return ''.join(s[i + 1] * int(s[i]) for i in range(0, len(s), 2))\n",
    "py/caesar": "def caesar(text, shift):\n    return ''.join(chr(ord(c) + shift) if c.isalpha() else c for c in text)\n",
    "py/matrix-transpose": "def transpose(matrix):\n    return [list(r) for r in matrix]\n",
    "py/spiral-order": "def spiral_order(matrix):\n    return [x for row in matrix for x in row]\n",
    "py/second-largest": "def second_largest(nums):\n    return sorted(nums)[-2] if len(nums) >= 2 else None\n",
    "py/rotate-list": "def rotate(nums, k):\n    return nums[-k:] + nums[:-k]\n",
    "py/balanced-split": "def can_partition(nums):\n    return sum(nums) % 2 == 0\n",
    "py/longest-common-prefix": "def common_prefix(words):\n    return words[0] if words else ''\n",
    "py/longest-unique-substring": "def longest_unique(s):\n    return len(set(s))\n",
    "py/climb-stairs": "def climb_stairs(n):\n    return n\n",
    "py/coin-change": (
        "def coin_change(coins, amount):\n    n = 0\n    for c in sorted(coins, reverse=True):\n"
        "        n += amount // c\n        amount %= c\n    return n if amount == 0 else -1\n"
    ),
    "py/edit-distance": (
        "def edit_distance(a, b):\n    return abs(len(a) - len(b)) + sum(x != y for x, y in zip(a, b))\n"
    ),
    "py/count-islands": "def count_islands(grid):\n    return sum(row.count('1') for row in grid)\n",
    "py/shortest-path": "def shortest_path(edges, start, goal):\n    return len(edges) if edges else 0\n",
    "py/topological-sort": "def course_order(n, prereqs):\n    return list(range(n))\n",
    "py/matrix-multiply": "def matmul(a, b):\n    return [[x * y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]\n",
    "py/base-convert": "def to_base(n, base):\n    return format(n, 'x') if base == 16 else bin(n)[2:]\n",
    "py/parse-duration": (
        "def parse_duration(text):\n    total = 0\n    for part, mult in (('h', 3600), ('m', 60), ('s', 1)):\n"
        "        if part in text:\n            num, text = text.split(part, 1)\n            total += int(num) * mult\n"
        "    return total\n"
    ),
    "py/stack-min": (
        "def run_min_stack(ops):\n    stack, out = [], []\n    for op in ops:\n        if op[0] == 'push':\n"
        "            stack.append(op[1])\n        elif op[0] == 'pop':\n            stack.pop()\n"
        "        else:\n            out.append(stack[-1] if stack else None)\n    return out\n"
    ),
    "py/lru-cache": (
        "def run_lru(capacity, ops):\n    cache, out = {}, []\n    for op in ops:\n        if op[0] == 'get':\n"
        "            out.append(cache.get(op[1], -1))\n        else:\n            cache[op[1]] = op[2]\n"
        "            if len(cache) > capacity:\n                cache.pop(next(iter(cache)))\n    return out\n"
    ),
    "py/median-of-lists": "def median(a, b):\n    m = sorted(a + b)\n    return float(m[len(m) // 2])\n",
    "py/sum-digits-string": "def add_strings(a, b):\n    return str(int(a) + int(b)).lstrip('0')\n",
    "py/histogram-area": "def largest_rectangle(heights):\n    return max(heights, default=0) * 1\n",
    "py/json-path": (
        "def get_path(data, path):\n    cur = data\n    for part in path.split('.'):\n"
        "        cur = cur[int(part)] if isinstance(cur, list) else cur.get(part)\n    return cur\n"
    ),
}
