package blocklists

// icannParents lists, space-separated, the parent of every rule of the
// ICANN part of the Public Suffix List in golang.org/x/net/publicsuffix
// (co.uk -> uk, *.kawasaki.jp -> kawasaki.jp), exceptions left out. A
// name of two or more labels can only be an ICANN public suffix if its
// parent is here. TestICANNParents checks the list against the x/net
// module in use and prints the new one when it changed.
const icannParents = "" +
	"aa.no ac ac.at ae aero af ag ah.no ai aichi.jp ak.us akershus.no " +
	"akita.jp al al.us am ao aomori.jp ar ar.us arpa as as.us at au aw " +
	"az az.us ba bb bd be bf bg bh bi bj bm bn bo br bs bt bu.no " +
	"buskerud.no bw by bz ca ca.us cd chiba.jp ci ck cl cm cn co co.im " +
	"co.us cr ct.us cu cv cw cx cy cz dc.us de.us dm do dz ec edu.au ee " +
	"eg ehime.jp er es et fi fj fk fl.us fm fm.no fr fukui.jp fukuoka.jp " +
	"fukushima.jp ga.us gd ge gg gh gi gifu.jp gl gn gov.au gov.br " +
	"gov.pl gp gr gt gu gu.us gunma.jp gy hedmark.no hi.us hiroshima.jp " +
	"hk hl.no hm.no hn hokkaido.jp hordaland.no hr ht hu hyogo.jp ia.us " +
	"ibaraki.jp id id.us ie il il.us im in in.us int io iq ir " +
	"ishikawa.jp it iwate.jp jan-mayen.no je jm jo jp k12.ma.us " +
	"kagawa.jp kagoshima.jp kanagawa.jp kawasaki.jp ke kg kh ki " +
	"kitakyushu.jp km kn kobe.jp kochi.jp kp kr ks.us kumamoto.jp kw ky " +
	"ky.us kyoto.jp kz la la.us lb lc lk lr ls lt lv ly ma ma.us mc " +
	"md.us me me.us mg mi.us mie.jp miyagi.jp miyazaki.jp mk ml mm mn " +
	"mn.us mo mo.us more-og-romsdal.no mr mr.no ms ms.us mt mt.us mu mv " +
	"mw mx my mz na nagano.jp nagasaki.jp nagoya.jp nara.jp nc nc.tr " +
	"nc.us nd.us ne.us nf ng nh.us ni niigata.jp nj.us nl.no nm.us no " +
	"nom.br nordland.no np nr nt.no nv.us ny.us nz of.no oh.us oita.jp " +
	"ok.us okayama.jp okinawa.jp ol.no om or.us osaka.jp oslo.no " +
	"ostfold.no pa pa.us pe pf pg ph pk pl pn pr pr.us pro ps pt pw py " +
	"qa re ri.us rl.no ro rs rw sa saga.jp saitama.jp sapporo.jp sb sc " +
	"sc.us sch.uk sd sd.us se sendai.jp sf.no sg sh shiga.jp shimane.jp " +
	"shizuoka.jp sk sl sn so ss st st.no sv svalbard.no sx sy sz " +
	"telemark.no th tj tl tm tm.no tn tn.us to tochigi.jp tokushima.jp " +
	"tokyo.jp tottori.jp toyama.jp tr tr.no tt tw tx.us tz ua ug uk us " +
	"ut.us uy uz va.no va.us vc ve vestfold.no vf.no vg vi vi.us vn " +
	"vt.us vu wa.us wakayama.jp wi.us ws wv.us wy.us xn--4dbrk0ce " +
	"xn--90a3ac xn--j6w193g xn--mre-og-romsdal-qqb.no xn--o3cw4h " +
	"xn--stfold-9xa.no yamagata.jp yamaguchi.jp yamanashi.jp ye " +
	"yokohama.jp za zm zw "
