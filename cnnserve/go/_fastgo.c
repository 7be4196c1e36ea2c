/* The Go rules and AlphaGo's 48 feature planes in C: the hot path of the policy network's input.
 *
 * cnnserve/go/board.py and features.py call these functions with the board held in Python
 * buffers (stones: a bytearray of 361 colours; placed: an int32 array of the move index that put
 * each stone there, -1 for a set-up stone). The planes are computed with the GIL released, so
 * several threads read several positions at once.
 *
 * The definitions (which points light which plane, how a ladder is read, when the reading gives
 * up) are those of the pure-Python reference in tests/goreference/, which the tests compare with
 * this code plane by plane on thousands of positions; change both together.
 *
 * Points are 0..360, row * 19 + col with row 0 the top line; colours EMPTY 0, BLACK 1, WHITE 2.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIZE 19
#define NP (SIZE * SIZE)
#define EMPTY 0
#define PLANES 48
#define WORDS 6 /* 64-bit words of a 361-point set */

/* Ladder reading: plies along one line, and moves in one reading (see tests/goreference/ladders.py). */
#define MAX_DEPTH 100
#define MAX_PLAYS 500

/* Why a move is illegal; board.py maps these to its messages. */
enum { LEGAL = 0, OCCUPIED = 1, KO = 2, SUICIDE = 3 };

/* Plane offsets (cnnserve/go/features.py's FEATURES). */
enum {
    P_PLAYER = 0, P_ONES = 3, P_TURNS = 4, P_LIBERTIES = 12, P_CAPTURE = 20, P_SELF_ATARI = 28,
    P_LIBERTIES_AFTER = 36, P_LADDER_CAPTURE = 44, P_LADDER_ESCAPE = 45, P_SENSIBLE = 46
};

/* Neighbours in board.py's order (up, down, left, right): the reading visits them in this order,
 * and the order decides which lines a reading that runs out of moves has read. */
static int NB[NP][4], NBN[NP], DG[NP][4], DGN[NP];

static void init_tables(void) {
    for (int p = 0; p < NP; p++) {
        int r = p / SIZE, c = p % SIZE, n = 0, d = 0;
        if (r > 0) NB[p][n++] = p - SIZE;
        if (r < SIZE - 1) NB[p][n++] = p + SIZE;
        if (c > 0) NB[p][n++] = p - 1;
        if (c < SIZE - 1) NB[p][n++] = p + 1;
        NBN[p] = n;
        if (r > 0 && c > 0) DG[p][d++] = p - SIZE - 1;
        if (r > 0 && c < SIZE - 1) DG[p][d++] = p - SIZE + 1;
        if (r < SIZE - 1 && c > 0) DG[p][d++] = p + SIZE - 1;
        if (r < SIZE - 1 && c < SIZE - 1) DG[p][d++] = p + SIZE + 1;
        DGN[p] = d;
    }
}

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* -- flood fill -------------------------------------------------------------------------- */

/* The chain through a point: its stones and liberties, marked with a generation number so that
 * nothing is cleared between fills. */
typedef struct {
    uint32_t gen;
    uint32_t mark[NP];  /* == gen: a stone of the chain */
    uint32_t lmark[NP]; /* == gen: one of its liberties */
    int stack[NP];
    int stones[NP], nstones;
    int libs[NP], nlibs;
} Fill;

static void fill(Fill *f, const uint8_t *s, int p) {
    uint32_t g = ++f->gen;
    if (g == 0) { /* wrapped after 2^32 fills: start the marks afresh */
        memset(f->mark, 0, sizeof f->mark);
        memset(f->lmark, 0, sizeof f->lmark);
        g = f->gen = 1;
    }
    int color = s[p], top = 0;
    f->nstones = f->nlibs = 0;
    f->mark[p] = g;
    f->stack[top++] = p;
    f->stones[f->nstones++] = p;
    while (top) {
        int q = f->stack[--top];
        for (int i = 0; i < NBN[q]; i++) {
            int n = NB[q][i];
            if (s[n] == EMPTY) {
                if (f->lmark[n] != g) {
                    f->lmark[n] = g;
                    f->libs[f->nlibs++] = n;
                }
            } else if (s[n] == color && f->mark[n] != g) {
                f->mark[n] = g;
                f->stack[top++] = n;
                f->stones[f->nstones++] = n;
            }
        }
    }
}

/* -- rules --------------------------------------------------------------------------------- */

typedef struct {
    uint8_t s[NP];
    int ko_point, ko_color; /* ko_color may not play at ko_point next; -1 and 0: no ko */
} Pos;

static int illegal_reason(Fill *f, const uint8_t *s, int ko_point, int color, int p) {
    if (s[p] != EMPTY) return OCCUPIED;
    if (p == ko_point) return KO;
    int enemy = 3 - color;
    for (int i = 0; i < NBN[p]; i++) {
        int n = NB[p][i];
        if (s[n] == EMPTY) return LEGAL;
        fill(f, s, n);
        if (s[n] == color && f->nlibs > 1) return LEGAL;  /* joins a group that keeps a liberty */
        if (s[n] == enemy && f->nlibs == 1) return LEGAL; /* captures */
    }
    return SUICIDE;
}

/* Play a legal move: captured stones go onto caps (from *ncaps on) and the ko is set as board.py
 * sets it (a lone stone that captured a lone stone and has that point as its only liberty). */
static void place_and_capture(Fill *f, Pos *pos, int color, int p, int *caps, int *ncaps) {
    uint8_t *s = pos->s;
    int enemy = 3 - color, first = *ncaps;
    s[p] = (uint8_t)color;
    for (int i = 0; i < NBN[p]; i++) {
        int n = NB[p][i];
        if (s[n] != enemy) continue;
        fill(f, s, n);
        if (f->nlibs) continue;
        for (int k = 0; k < f->nstones; k++) {
            s[f->stones[k]] = EMPTY;
            caps[(*ncaps)++] = f->stones[k];
        }
    }
    pos->ko_point = -1;
    pos->ko_color = 0;
    if (*ncaps - first == 1) {
        fill(f, s, p);
        if (f->nstones == 1 && f->nlibs == 1 && f->libs[0] == caps[first]) {
            pos->ko_point = caps[first];
            pos->ko_color = enemy;
        }
    }
}

/* -- ladder reading ------------------------------------------------------------------------ */

typedef struct {
    Pos pos;
    Fill f;
    int attacker, defender, prey, plays, gave_up;
    int max_depth, max_plays; /* MAX_DEPTH and MAX_PLAYS but where the tests ask for less */
    uint32_t seen_gen, union_gen;
    uint32_t seen[NP], umark[NP];
    int sorted[NP];
    /* The current line's captured stones and the defences of its open plies: at most a board's
     * worth a ply. */
    int caps[NP * (MAX_DEPTH + 4)], ncaps;
    int defences[NP * (MAX_DEPTH + 4)], ndefences;
} Reader;

typedef struct {
    int point, ko_point, ko_color, caps_from;
} Undo;

/* 1 played, 0 illegal, -1 the reading's moves are spent (it gives up). */
static int reader_play(Reader *r, int color, int p, Undo *u) {
    if (++r->plays > r->max_plays) {
        r->gave_up = 1;
        return -1;
    }
    int ko = r->pos.ko_color == color ? r->pos.ko_point : -1;
    if (illegal_reason(&r->f, r->pos.s, ko, color, p) != LEGAL) return 0;
    u->point = p;
    u->ko_point = r->pos.ko_point;
    u->ko_color = r->pos.ko_color;
    u->caps_from = r->ncaps;
    place_and_capture(&r->f, &r->pos, color, p, r->caps, &r->ncaps);
    return 1;
}

static void reader_undo(Reader *r, const Undo *u) {
    int color = r->pos.s[u->point];
    r->pos.s[u->point] = EMPTY;
    while (r->ncaps > u->caps_from) r->pos.s[r->caps[--r->ncaps]] = (uint8_t)(3 - color);
    r->pos.ko_point = u->ko_point;
    r->pos.ko_color = u->ko_color;
}

static void sort_ints(int *a, int n) {
    for (int i = 1; i < n; i++) {
        int v = a[i], j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static int escapes(Reader *r, int depth);

/* The prey is in atari and the defender moves: does every defence lose the prey? */
static int captured(Reader *r, int depth) {
    if (depth >= r->max_depth) return 0;
    Fill *f = &r->f;
    const uint8_t *s = r->pos.s;
    fill(f, s, r->prey);
    if (f->nlibs != 1) return f->nlibs == 0;
    int base = r->ndefences;
    r->defences[r->ndefences++] = f->libs[0];
    /* Capturing an attacker group in atari that touches the prey gains the prey liberties. */
    int ns = f->nstones;
    memcpy(r->sorted, f->stones, (size_t)ns * sizeof(int));
    sort_ints(r->sorted, ns);
    uint32_t sg = ++r->seen_gen;
    if (sg == 0) {
        memset(r->seen, 0, sizeof r->seen);
        sg = r->seen_gen = 1;
    }
    for (int i = 0; i < ns; i++) {
        int q = r->sorted[i];
        for (int j = 0; j < NBN[q]; j++) {
            int n = NB[q][j];
            if (s[n] != r->attacker || r->seen[n] == sg) continue;
            fill(f, s, n);
            for (int k = 0; k < f->nstones; k++) r->seen[f->stones[k]] = sg;
            if (f->nlibs != 1) continue;
            int last = f->libs[0], known = 0;
            for (int k = base; k < r->ndefences; k++) known |= r->defences[k] == last;
            if (!known) r->defences[r->ndefences++] = last;
        }
    }
    int result = 1;
    for (int k = base; k < r->ndefences; k++) {
        Undo u;
        int played = reader_play(r, r->defender, r->defences[k], &u);
        if (played < 0) {
            result = 0;
            break;
        }
        if (played == 0) continue;
        int away = escapes(r, depth + 1);
        reader_undo(r, &u);
        if (r->gave_up || away) {
            result = 0;
            break;
        }
    }
    r->ndefences = base;
    return result;
}

/* Liberties of the prey once the attacker plays `attack` and the defender extends at
 * `extension` (captures aside); prey_gen marks the prey's stones. */
static int extension_liberties(Reader *r, int attack, int extension, uint32_t prey_gen) {
    Fill *f = &r->f;
    const uint8_t *s = r->pos.s;
    uint32_t ug = ++r->union_gen;
    if (ug == 0) {
        memset(r->umark, 0, sizeof r->umark);
        ug = r->union_gen = 1;
    }
    int count = 0;
    for (int i = 0; i < NBN[extension]; i++) {
        int n = NB[extension][i];
        if (s[n] == EMPTY) {
            if (r->umark[n] != ug) {
                r->umark[n] = ug;
                count += n != attack && n != extension;
            }
        } else if (s[n] == r->defender && f->mark[n] != prey_gen) {
            fill(f, s, n);
            for (int k = 0; k < f->nlibs; k++) {
                int l = f->libs[k];
                if (r->umark[l] != ug) {
                    r->umark[l] = ug;
                    count += l != attack && l != extension;
                }
            }
        }
    }
    return count;
}

static int edge_distance(int p) {
    int row = p / SIZE, col = p % SIZE;
    return min_int(min_int(row, col), min_int(SIZE - 1 - row, SIZE - 1 - col));
}

/* The defender has moved and the attacker moves: does the prey get away? */
static int escapes(Reader *r, int depth) {
    Fill *f = &r->f;
    fill(f, r->pos.s, r->prey);
    if (f->nlibs >= 3) return 1;
    if (f->nlibs == 1) {
        int ko = r->pos.ko_color == r->attacker ? r->pos.ko_point : -1;
        return illegal_reason(f, r->pos.s, ko, r->attacker, f->libs[0]) != LEGAL;
    }
    if (f->nlibs == 0) return 0; /* not reached: the defender's legal move leaves the prey a liberty */
    /* The better atari first: the one after which the extension has fewer liberties; on a tie,
     * the one that drives the prey towards the edge; then the lower point. */
    int a = f->libs[0] < f->libs[1] ? f->libs[0] : f->libs[1];
    int b = a == f->libs[0] ? f->libs[1] : f->libs[0];
    uint32_t prey_gen = f->gen;
    int la = extension_liberties(r, a, b, prey_gen), lb = extension_liberties(r, b, a, prey_gen);
    if (lb < la || (lb == la && edge_distance(a) < edge_distance(b))) {
        int t = a;
        a = b;
        b = t;
    }
    int attacks[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        Undo u;
        int played = reader_play(r, r->attacker, attacks[i], &u);
        if (played < 0) return 1;
        if (played == 0) continue;
        int caught = captured(r, depth + 1);
        reader_undo(r, &u);
        if (r->gave_up) return 1;
        if (caught) return 0;
    }
    return 1;
}

static void reader_start(Reader *r, int attacker, int prey) {
    if (!r->max_depth) r->max_depth = MAX_DEPTH;
    if (!r->max_plays) r->max_plays = MAX_PLAYS;
    r->attacker = attacker;
    r->defender = 3 - attacker;
    r->prey = prey;
    r->plays = r->gave_up = 0;
    r->ncaps = r->ndefences = 0;
}

/* `color` plays `p` (a liberty of the two-liberty opponent group through `prey`): is that group
 * then in atari and captured in a ladder? A reading that gives up counts as no. */
static int ladder_capture(Reader *r, int color, int p, int prey) {
    reader_start(r, color, prey);
    Undo u;
    if (reader_play(r, color, p, &u) != 1) return 0;
    fill(&r->f, r->pos.s, prey);
    int result = r->f.nlibs == 1 && captured(r, 1);
    reader_undo(r, &u);
    return result && !r->gave_up;
}

/* `color` plays `p` to save its group in atari through `prey`: is the group then safe from a
 * ladder? A reading that gives up counts as yes. */
static int ladder_escape(Reader *r, int color, int p, int prey) {
    reader_start(r, 3 - color, prey);
    Undo u;
    if (reader_play(r, color, p, &u) != 1) return 0;
    int result = escapes(r, 1);
    reader_undo(r, &u);
    return result || r->gave_up;
}

/* -- the planes ---------------------------------------------------------------------------- */

typedef struct {
    Fill f;
    int label[NP];
    int color[NP], size[NP], nlibs[NP], start[NP];
    uint64_t libs[NP][WORDS];
    int stones[NP];
    int nchains;
    /* Per legal move: stones captured, liberties and stones of the new group; legal[p] = 0 or 1. */
    uint8_t legal[NP];
    int captures[NP], libs_after[NP], size_after[NP];
    uint8_t ladder_capture[NP], ladder_escape[NP];
    Reader reader;
} Work;

static inline void set_bit(uint64_t *set, int p) { set[p >> 6] |= (uint64_t)1 << (p & 63); }
static inline int has_bit(const uint64_t *set, int p) { return (int)((set[p >> 6] >> (p & 63)) & 1); }

static int popcount(const uint64_t *set) {
    int n = 0;
    for (int i = 0; i < WORDS; i++) n += __builtin_popcountll(set[i]);
    return n;
}

static void find_chains(Work *w, const uint8_t *s) {
    int placed = 0;
    w->nchains = 0;
    for (int p = 0; p < NP; p++) w->label[p] = -1;
    for (int p = 0; p < NP; p++) {
        if (s[p] == EMPTY || w->label[p] >= 0) continue;
        int c = w->nchains++;
        fill(&w->f, s, p);
        w->color[c] = s[p];
        w->size[c] = w->f.nstones;
        w->nlibs[c] = w->f.nlibs;
        w->start[c] = placed;
        memset(w->libs[c], 0, sizeof w->libs[c]);
        for (int k = 0; k < w->f.nlibs; k++) set_bit(w->libs[c], w->f.libs[k]);
        for (int k = 0; k < w->f.nstones; k++) {
            w->label[w->f.stones[k]] = c;
            w->stones[placed++] = w->f.stones[k];
        }
    }
}

/* Every legal move of `color`, worked out from the neighbouring chains without playing it. */
static void find_moves(Work *w, const uint8_t *s, int color, int ko_point) {
    for (int p = 0; p < NP; p++) {
        w->legal[p] = 0;
        if (s[p] != EMPTY || p == ko_point) continue;
        int own[4], nown = 0, taken[4], ntaken = 0, empties = 0;
        uint64_t libs[WORDS] = {0};
        for (int i = 0; i < NBN[p]; i++) {
            int n = NB[p][i];
            if (s[n] == EMPTY) {
                empties++;
                set_bit(libs, n);
                continue;
            }
            int c = w->label[n], known = 0;
            if (s[n] == color) {
                for (int k = 0; k < nown; k++) known |= own[k] == c;
                if (!known) own[nown++] = c;
            } else if (w->nlibs[c] == 1) {
                for (int k = 0; k < ntaken; k++) known |= taken[k] == c;
                if (!known) taken[ntaken++] = c;
            }
        }
        if (!nown && !ntaken) {
            if (empties) { /* a lone stone: its liberties are its empty neighbours */
                w->legal[p] = 1;
                w->captures[p] = 0;
                w->libs_after[p] = empties;
                w->size_after[p] = 1;
            }
            continue;
        }
        int size = 1, captured = 0;
        for (int k = 0; k < nown; k++) {
            for (int i = 0; i < WORDS; i++) libs[i] |= w->libs[own[k]][i];
            size += w->size[own[k]];
        }
        for (int k = 0; k < ntaken; k++) {
            int c = taken[k];
            captured += w->size[c];
            /* A captured stone is a liberty when it touches p or one of the joined chains. */
            for (int j = w->start[c]; j < w->start[c] + w->size[c]; j++) {
                int q = w->stones[j], touches = 0;
                for (int i = 0; i < NBN[q] && !touches; i++) {
                    int n = NB[q][i];
                    if (n == p) touches = 1;
                    for (int m = 0; m < nown && !touches; m++) touches = w->label[n] == own[m];
                }
                if (touches) set_bit(libs, q);
            }
        }
        libs[p >> 6] &= ~((uint64_t)1 << (p & 63));
        int count = popcount(libs);
        if (count) {
            w->legal[p] = 1;
            w->captures[p] = captured;
            w->libs_after[p] = count;
            w->size_after[p] = size;
        }
    }
}

static int is_eye(const uint8_t *s, int color, int p) {
    if (s[p] != EMPTY) return 0;
    for (int i = 0; i < NBN[p]; i++)
        if (s[NB[p][i]] != color) return 0;
    int enemies = 0;
    for (int i = 0; i < DGN[p]; i++) enemies += s[DG[p][i]] == 3 - color;
    return DGN[p] < 4 ? enemies == 0 : enemies <= 1;
}

static void find_ladders(Work *w, const Pos *base, int to_move) {
    const uint8_t *s = base->s;
    int enemy = 3 - to_move;
    memset(w->ladder_capture, 0, NP);
    memset(w->ladder_escape, 0, NP);
    for (int c = 0; c < w->nchains; c++) {
        if (w->color[c] == enemy && w->nlibs[c] == 2) {
            int prey = w->stones[w->start[c]];
            for (int p = 0; p < NP; p++) {
                if (!has_bit(w->libs[c], p) || !w->legal[p] || w->ladder_capture[p]) continue;
                w->reader.pos = *base;
                w->ladder_capture[p] = (uint8_t)ladder_capture(&w->reader, to_move, p, prey);
            }
        } else if (w->color[c] == to_move && w->nlibs[c] == 1) {
            /* Candidates: its last liberty, and the liberty of each opponent chain in atari that
             * touches it (capturing one gains liberties). */
            uint64_t candidates[WORDS];
            memcpy(candidates, w->libs[c], sizeof candidates);
            for (int j = w->start[c]; j < w->start[c] + w->size[c]; j++) {
                int q = w->stones[j];
                for (int i = 0; i < NBN[q]; i++) {
                    int n = NB[q][i];
                    if (s[n] == enemy && w->nlibs[w->label[n]] == 1)
                        for (int k = 0; k < WORDS; k++) candidates[k] |= w->libs[w->label[n]][k];
                }
            }
            int prey = w->stones[w->start[c]];
            for (int p = 0; p < NP; p++) {
                if (!has_bit(candidates, p) || !w->legal[p] || w->ladder_escape[p]) continue;
                w->reader.pos = *base;
                w->ladder_escape[p] = (uint8_t)ladder_escape(&w->reader, to_move, p, prey);
            }
        }
    }
}

static void compute_planes(Work *w, const Pos *base, const int32_t *placed, int moves, int to_move, float *out) {
    const uint8_t *s = base->s;
    int ko_point = base->ko_color == to_move ? base->ko_point : -1;
    memset(out, 0, sizeof(float) * PLANES * NP);
    find_chains(w, s);
    find_moves(w, s, to_move, ko_point);
    find_ladders(w, base, to_move);
#define HOT(plane, p) (out[(plane) * NP + (p)] = 1.0f)
    for (int p = 0; p < NP; p++) {
        HOT(P_ONES, p);
        if (s[p] == EMPTY) {
            HOT(P_PLAYER + 2, p);
        } else {
            HOT(s[p] == to_move ? P_PLAYER : P_PLAYER + 1, p);
            HOT(P_LIBERTIES + min_int(w->nlibs[w->label[p]], 8) - 1, p);
            int age = placed[p] < 0 ? 7 : min_int(moves - 1 - placed[p], 7);
            HOT(P_TURNS + (age < 0 ? 0 : age), p);
        }
        if (!w->legal[p]) continue;
        HOT(P_CAPTURE + min_int(w->captures[p], 7), p);
        if (w->libs_after[p] == 1) HOT(P_SELF_ATARI + min_int(w->size_after[p], 8) - 1, p);
        HOT(P_LIBERTIES_AFTER + min_int(w->libs_after[p], 8) - 1, p);
        if (!is_eye(s, to_move, p)) HOT(P_SENSIBLE, p);
        if (w->ladder_capture[p]) HOT(P_LADDER_CAPTURE, p);
        if (w->ladder_escape[p]) HOT(P_LADDER_ESCAPE, p);
    }
#undef HOT
}

/* One Work a thread, kept for the thread's life (about 350 KB, mostly the reader's stacks):
 * allocating and zeroing it per call would cost more than a position's planes. The marks need no
 * clearing between calls: each fill takes a new generation number. */
static pthread_key_t work_key;
static pthread_once_t work_once = PTHREAD_ONCE_INIT;

static void make_work_key(void) { (void)pthread_key_create(&work_key, free); }

static Work *thread_work(void) {
    (void)pthread_once(&work_once, make_work_key);
    Work *w = pthread_getspecific(work_key);
    if (!w && (w = calloc(1, sizeof(Work))) != NULL && pthread_setspecific(work_key, w) != 0) {
        free(w);
        w = NULL;
    }
    return w;
}

/* -- Python glue ---------------------------------------------------------------------------- */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, Py_ssize_t items,
                      const char *what) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len != itemsize * items) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes; expected %zd (%zd items of %zd bytes)", what, view->len,
                     itemsize * items, items, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int check_point(int p, const char *what) {
    if (p < 0 || p >= NP) {
        PyErr_Format(PyExc_ValueError, "%s: %d is not a point (0 to %d)", what, p, NP - 1);
        return -1;
    }
    return 0;
}

static int check_color(int color, const char *what) {
    if (color != 1 && color != 2) {
        PyErr_Format(PyExc_ValueError, "%s: %d is neither BLACK (1) nor WHITE (2)", what, color);
        return -1;
    }
    return 0;
}

static int check_stones(const uint8_t *s) {
    for (int p = 0; p < NP; p++)
        if (s[p] > 2) {
            PyErr_Format(PyExc_ValueError, "stones: point %d holds %d; expected 0, 1 or 2", p, s[p]);
            return -1;
        }
    return 0;
}

/* A board's two buffers (stones, placed), checked, and the thread's Work; NULL with the
 * exception set and nothing held when something is wrong. */
static Work *open_board(PyObject *stones_obj, PyObject *placed_obj, Py_buffer *stones, Py_buffer *placed,
                        int writable) {
    if (get_buffer(stones_obj, stones, writable, 1, NP, "stones") < 0) return NULL;
    if (get_buffer(placed_obj, placed, writable, 4, NP, "placed") < 0) {
        PyBuffer_Release(stones);
        return NULL;
    }
    Work *w = thread_work();
    if (!w)
        PyErr_NoMemory();
    else if (check_stones(stones->buf) == 0)
        return w;
    PyBuffer_Release(stones);
    PyBuffer_Release(placed);
    return NULL;
}

PyDoc_STRVAR(illegal_doc, "illegal(stones, color, point, ko_point) -> 0 legal, 1 occupied, 2 ko, 3 suicide");

static PyObject *py_illegal(PyObject *self, PyObject *args) {
    PyObject *stones_obj;
    int color, p, ko_point;
    if (!PyArg_ParseTuple(args, "Oiii", &stones_obj, &color, &p, &ko_point)) return NULL;
    if (check_color(color, "color") < 0 || check_point(p, "point") < 0) return NULL;
    Py_buffer stones;
    if (get_buffer(stones_obj, &stones, 0, 1, NP, "stones") < 0) return NULL;
    Work *w = thread_work();
    if (!w) {
        PyBuffer_Release(&stones);
        return PyErr_NoMemory();
    }
    int reason = check_stones(stones.buf) < 0 ? -1 : illegal_reason(&w->f, stones.buf, ko_point, color, p);
    PyBuffer_Release(&stones);
    return reason < 0 ? NULL : PyLong_FromLong(reason);
}

PyDoc_STRVAR(play_doc,
             "play(stones, placed, color, point, move_index, ko_point) -> reason or (captured, ko)\n\n"
             "Play a move in place: an int reason (1 occupied, 2 ko, 3 suicide) when it is illegal, and\n"
             "nothing changes; else the list of captured points and the new ko point (-1: none; the ko\n"
             "forbids the captured colour).");

static PyObject *py_play(PyObject *self, PyObject *args) {
    PyObject *stones_obj, *placed_obj;
    int color, p, move_index, ko_point;
    if (!PyArg_ParseTuple(args, "OOiiii", &stones_obj, &placed_obj, &color, &p, &move_index, &ko_point)) return NULL;
    if (check_color(color, "color") < 0 || check_point(p, "point") < 0) return NULL;
    Py_buffer stones, placed;
    Work *w = open_board(stones_obj, placed_obj, &stones, &placed, 1);
    if (!w) return NULL;
    PyObject *result = NULL;
    Pos *pos = &w->reader.pos;
    memcpy(pos->s, stones.buf, NP);
    int reason = illegal_reason(&w->f, pos->s, ko_point, color, p);
    if (reason != LEGAL) {
        result = PyLong_FromLong(reason);
        goto done;
    }
    int ncaps = 0;
    place_and_capture(&w->f, pos, color, p, w->reader.caps, &ncaps);
    memcpy(stones.buf, pos->s, NP);
    int32_t *ages = placed.buf;
    ages[p] = move_index;
    PyObject *caps = PyList_New(ncaps);
    if (!caps) goto done;
    for (int k = 0; k < ncaps; k++) {
        ages[w->reader.caps[k]] = -1;
        PyList_SET_ITEM(caps, k, PyLong_FromLong(w->reader.caps[k]));
    }
    result = Py_BuildValue("(Ni)", caps, pos->ko_point);
done:
    PyBuffer_Release(&stones);
    PyBuffer_Release(&placed);
    return result;
}

PyDoc_STRVAR(play_many_doc,
             "play_many(stones, placed, moves, first_index, ko_point, ko_color)\n"
             "    -> (played, reason, captured_by_black, captured_by_white, ko_point, ko_color)\n\n"
             "Play a sequence of (color, point or None) moves in place, as play() would one by one,\n"
             "the first numbered first_index; stop before the first illegal one (reason 1 occupied,\n"
             "2 ko, 3 suicide; 0 when all were played). Replaying a record costs a call, not a call a\n"
             "move.");

static PyObject *py_play_many(PyObject *self, PyObject *args) {
    PyObject *stones_obj, *placed_obj, *moves;
    int first_index, ko_point, ko_color;
    if (!PyArg_ParseTuple(args, "OOO!iii", &stones_obj, &placed_obj, &PyList_Type, &moves, &first_index, &ko_point,
                          &ko_color))
        return NULL;
    Py_buffer stones, placed;
    Work *w = open_board(stones_obj, placed_obj, &stones, &placed, 1);
    if (!w) return NULL;
    PyObject *result = NULL;
    Pos *pos = &w->reader.pos;
    memcpy(pos->s, stones.buf, NP);
    pos->ko_point = ko_point;
    pos->ko_color = ko_point < 0 ? 0 : ko_color;
    int32_t ages[NP]; /* committed with the stones at the end: a bad tuple changes nothing */
    memcpy(ages, placed.buf, sizeof ages);
    long prisoners[3] = {0, 0, 0};
    Py_ssize_t played = 0, count = PyList_GET_SIZE(moves);
    int reason = LEGAL;
    for (; played < count; played++) {
        PyObject *move = PyList_GET_ITEM(moves, played);
        int color, p = -1;
        PyObject *where;
        if (!PyTuple_Check(move) || PyTuple_GET_SIZE(move) != 2) {
            PyErr_Format(PyExc_TypeError, "moves[%zd]: expected a (color, point or None) tuple", played);
            goto done;
        }
        color = (int)PyLong_AsLong(PyTuple_GET_ITEM(move, 0));
        where = PyTuple_GET_ITEM(move, 1);
        if (where != Py_None) p = (int)PyLong_AsLong(where);
        if (PyErr_Occurred()) goto done;
        if (check_color(color, "color") < 0 || (where != Py_None && check_point(p, "point") < 0)) goto done;
        if (p < 0) { /* a pass */
            pos->ko_point = -1;
            pos->ko_color = 0;
            continue;
        }
        int ko = pos->ko_color == color ? pos->ko_point : -1;
        reason = illegal_reason(&w->f, pos->s, ko, color, p);
        if (reason != LEGAL) break;
        int ncaps = 0;
        place_and_capture(&w->f, pos, color, p, w->reader.caps, &ncaps);
        ages[p] = first_index + (int)played;
        for (int k = 0; k < ncaps; k++) ages[w->reader.caps[k]] = -1;
        prisoners[color] += ncaps;
    }
    memcpy(stones.buf, pos->s, NP);
    memcpy(placed.buf, ages, sizeof ages);
    result = Py_BuildValue("(niiiii)", played, reason, (int)prisoners[1], (int)prisoners[2], pos->ko_point,
                           pos->ko_color);
done:
    PyBuffer_Release(&stones);
    PyBuffer_Release(&placed);
    return result;
}

PyDoc_STRVAR(planes_doc,
             "planes(stones, placed, moves, ko_point, ko_color, to_move, out)\n\n"
             "Write the 48 planes for to_move into out (a writable float32 buffer of 48 * 361),\n"
             "with the GIL released. moves: the number of moves played (for the turns-since planes);\n"
             "ko_color may not play at ko_point (-1, 0: no ko).");

static PyObject *py_planes(PyObject *self, PyObject *args) {
    PyObject *stones_obj, *placed_obj, *out_obj;
    int moves, ko_point, ko_color, to_move;
    if (!PyArg_ParseTuple(args, "OOiiiiO", &stones_obj, &placed_obj, &moves, &ko_point, &ko_color, &to_move,
                          &out_obj))
        return NULL;
    if (check_color(to_move, "to_move") < 0) return NULL;
    if (ko_point != -1 && (check_point(ko_point, "ko_point") < 0 || check_color(ko_color, "ko_color") < 0))
        return NULL;
    Py_buffer stones, placed, out;
    Work *w = open_board(stones_obj, placed_obj, &stones, &placed, 0);
    if (!w) return NULL;
    if (get_buffer(out_obj, &out, 1, 4, PLANES * NP, "out") < 0) {
        PyBuffer_Release(&stones);
        PyBuffer_Release(&placed);
        return NULL;
    }
    PyObject *result = NULL;
    Pos base;
    memcpy(base.s, stones.buf, NP);
    base.ko_point = ko_point;
    base.ko_color = ko_point < 0 ? 0 : ko_color;
    Py_BEGIN_ALLOW_THREADS
    compute_planes(w, &base, placed.buf, moves, to_move, out.buf);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
    PyBuffer_Release(&stones);
    PyBuffer_Release(&placed);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(ladder_doc,
             "ladder_capture(stones, ko_point, ko_color, color, point, prey[, max_depth, max_plays]) -> bool\n"
             "ladder_escape(stones, ko_point, ko_color, color, point, prey[, max_depth, max_plays]) -> bool\n\n"
             "One ladder reading, as the planes do it (for the tests and GNU Go comparisons); the\n"
             "tests lower the reading's limits to see what happens at them.");

static PyObject *ladder(PyObject *args, int capture) {
    PyObject *stones_obj;
    int ko_point, ko_color, color, p, prey, max_depth = MAX_DEPTH, max_plays = MAX_PLAYS;
    if (!PyArg_ParseTuple(args, "Oiiiii|ii", &stones_obj, &ko_point, &ko_color, &color, &p, &prey, &max_depth,
                          &max_plays))
        return NULL;
    if (max_depth < 1 || max_depth > MAX_DEPTH || max_plays < 1 || max_plays > MAX_PLAYS) {
        PyErr_Format(PyExc_ValueError, "max_depth and max_plays: 1 to %d and 1 to %d", MAX_DEPTH, MAX_PLAYS);
        return NULL;
    }
    if (check_color(color, "color") < 0 || check_point(p, "point") < 0 || check_point(prey, "prey") < 0) return NULL;
    Py_buffer stones;
    if (get_buffer(stones_obj, &stones, 0, 1, NP, "stones") < 0) return NULL;
    Work *w = NULL;
    PyObject *result = NULL;
    if (check_stones(stones.buf) < 0) goto done;
    if (((uint8_t *)stones.buf)[prey] != (capture ? 3 - color : color)) {
        PyErr_Format(PyExc_ValueError, "prey: point %d holds no %s stone", prey, capture ? "opponent" : "own");
        goto done;
    }
    if (!(w = thread_work())) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(w->reader.pos.s, stones.buf, NP);
    w->reader.pos.ko_point = ko_point;
    w->reader.pos.ko_color = ko_point < 0 ? 0 : ko_color;
    w->reader.max_depth = max_depth;
    w->reader.max_plays = max_plays;
    int found = capture ? ladder_capture(&w->reader, color, p, prey) : ladder_escape(&w->reader, color, p, prey);
    w->reader.max_depth = MAX_DEPTH;
    w->reader.max_plays = MAX_PLAYS;
    result = PyBool_FromLong(found);
done:
    PyBuffer_Release(&stones);
    return result;
}

static PyObject *py_ladder_capture(PyObject *self, PyObject *args) { return ladder(args, 1); }
static PyObject *py_ladder_escape(PyObject *self, PyObject *args) { return ladder(args, 0); }

static PyMethodDef methods[] = {
    {"illegal", py_illegal, METH_VARARGS, illegal_doc},
    {"play", py_play, METH_VARARGS, play_doc},
    {"play_many", py_play_many, METH_VARARGS, play_many_doc},
    {"planes", py_planes, METH_VARARGS, planes_doc},
    {"ladder_capture", py_ladder_capture, METH_VARARGS, ladder_doc},
    {"ladder_escape", py_ladder_escape, METH_VARARGS, ladder_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cnnserve.go._fastgo",
    "The Go rules and the 48 feature planes in C (see cnnserve/go/board.py and features.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastgo(void) {
    init_tables();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "PLANES", PLANES) < 0 || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PLAYS", MAX_PLAYS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
